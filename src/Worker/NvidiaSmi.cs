using System.Diagnostics;

namespace RenderFarm.Worker;

/// <summary>Asks <c>nvidia-smi</c> about one GPU: the worker's device description and its model cache's memory gauge both do.</summary>
public static class NvidiaSmi
{
    /// <summary>
    /// Runs <c>TOOL --query-gpu=FIELDS --format=csv,noheader,nounits -i DEVICE</c>; returns its exit code and output.
    /// </summary>
    /// <exception cref="System.ComponentModel.Win32Exception">The tool is not installed.</exception>
    /// <exception cref="TimeoutException">It did not answer within <paramref name="timeout"/> (it is killed).</exception>
    public static (int ExitCode, string Output) Query(string tool, string fields, string device, TimeSpan timeout)
    {
        var info = new ProcessStartInfo(tool)
        {
            ArgumentList = { $"--query-gpu={fields}", "--format=csv,noheader,nounits", "-i", device },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{tool} did not answer in {timeout.TotalSeconds:0} s");
        }
        return (process.ExitCode, output.Result);
    }
}
