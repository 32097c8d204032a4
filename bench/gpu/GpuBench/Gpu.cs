using System.Diagnostics;

namespace RenderFarm.GpuBench;

/// <summary>What nvidia-smi says of the GPU (name, driver, memory used/total); "no GPU" where it is missing.</summary>
internal static class Gpu
{
    public static string Describe() => Query("--query-gpu=name,driver_version,memory.used,memory.total --format=csv,noheader") ?? "no GPU (nvidia-smi not found)";

    /// <summary>MiB of device memory in use, or -1.</summary>
    public static long UsedMiB() =>
        long.TryParse(Query("--query-gpu=memory.used --format=csv,noheader,nounits")?.Split('\n')[0].Trim(), out var used) ? used : -1;

    private static string? Query(string arguments)
    {
        try
        {
            using var process = Process.Start(new ProcessStartInfo("nvidia-smi", arguments) { RedirectStandardOutput = true, RedirectStandardError = true })!;
            string output = process.StandardOutput.ReadToEnd().Trim();
            process.WaitForExit(5000);
            return output;
        }
        catch (Exception)
        {
            return null;
        }
    }
}
