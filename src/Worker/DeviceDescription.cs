using System.Diagnostics;
using System.Globalization;

namespace RenderFarm.Worker;

/// <summary>
/// What a worker reports it renders on (its registration, shown by <c>farm workers</c>): the device's name and memory.
/// For CUDA and TensorRT that is the GPU as <c>nvidia-smi</c> names it, with its total memory; on the CPU, the core
/// count and the memory available to the process.
/// </summary>
public sealed record DeviceDescription(string Name, ulong MemoryBytes)
{
    private static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(5);

    public static DeviceDescription Probe(string executionProvider, ILogger logger, string nvidiaSmi = "nvidia-smi")
    {
        var processMemory = (ulong)Math.Max(0, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes);
        if (executionProvider is not ("cuda" or "tensorrt"))
            return new(executionProvider == "cpu" ? $"cpu x{Environment.ProcessorCount}" : executionProvider, processMemory);
        // ONNX Runtime renders on device 0 of those visible to the process: the first of CUDA_VISIBLE_DEVICES
        // (an index or a UUID, both of which nvidia-smi -i takes) when it is set.
        var device = Environment.GetEnvironmentVariable("CUDA_VISIBLE_DEVICES")?.Split(',')[0].Trim() is { Length: > 0 } visible ? visible : "0";
        try
        {
            var info = new ProcessStartInfo(nvidiaSmi)
            {
                ArgumentList = { "--query-gpu=name,memory.total", "--format=csv,noheader,nounits", "-i", device },
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            using var process = Process.Start(info)!;
            var output = process.StandardOutput.ReadToEndAsync();
            if (!process.WaitForExit(ProbeTimeout))
            {
                process.Kill(entireProcessTree: true);
                throw new TimeoutException($"{nvidiaSmi} did not answer in {ProbeTimeout.TotalSeconds:0} s");
            }
            if (process.ExitCode == 0 && ParseNvidiaSmi(output.Result) is { } gpu) return gpu;
            logger.LogWarning("{Tool} exited {Code} without a GPU description; reporting the device as {Provider}",
                nvidiaSmi, process.ExitCode, executionProvider);
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or TimeoutException)
        {
            logger.LogWarning("Cannot describe the GPU ({Reason}); reporting the device as {Provider}", e.Message, executionProvider);
        }
        return new(executionProvider, processMemory);
    }

    /// <summary>Reads <c>nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits</c>'s first line.</summary>
    public static DeviceDescription? ParseNvidiaSmi(string output)
    {
        var line = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault();
        var comma = line?.LastIndexOf(',') ?? -1;
        if (comma <= 0) return null;
        var name = line![..comma].Trim();
        return name.Length > 0 && ulong.TryParse(line[(comma + 1)..].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var mib)
            ? new DeviceDescription(name, mib * 1024 * 1024)
            : null;
    }
}
