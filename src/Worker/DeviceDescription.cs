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

    /// <summary>Describes the device <paramref name="deviceId"/> (<c>Farm:DeviceId</c>) names for this process.</summary>
    public static DeviceDescription Probe(string executionProvider, int deviceId, ILogger logger, string nvidiaSmi = "nvidia-smi") =>
        Probe(executionProvider, deviceId, Environment.GetEnvironmentVariable("CUDA_VISIBLE_DEVICES"), logger, nvidiaSmi);

    /// <param name="cudaVisibleDevices">The process's <c>CUDA_VISIBLE_DEVICES</c> (null: not set).</param>
    public static DeviceDescription Probe(string executionProvider, int deviceId, string? cudaVisibleDevices, ILogger logger, string nvidiaSmi = "nvidia-smi")
    {
        var processMemory = (ulong)Math.Max(0, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes);
        if (executionProvider is not ("cuda" or "tensorrt"))
            return new(executionProvider == "cpu" ? $"cpu x{Environment.ProcessorCount}" : executionProvider, processMemory);
        if (NvidiaSmiDevice(deviceId, cudaVisibleDevices) is not { } device)
        {
            logger.LogWarning("Device {DeviceId} is not among the GPUs visible to this process (CUDA_VISIBLE_DEVICES={Visible}); " +
                              "reporting the device as {Provider}", deviceId, cudaVisibleDevices, executionProvider);
            return new(executionProvider, processMemory);
        }
        try
        {
            var (code, output) = NvidiaSmi.Query(nvidiaSmi, "name,memory.total", device, ProbeTimeout);
            if (code == 0 && ParseNvidiaSmi(output) is { } gpu) return gpu;
            logger.LogWarning("{Tool} exited {Code} without a GPU description; reporting the device as {Provider}",
                nvidiaSmi, code, executionProvider);
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or TimeoutException)
        {
            logger.LogWarning("Cannot describe the GPU ({Reason}); reporting the device as {Provider}", e.Message, executionProvider);
        }
        return new(executionProvider, processMemory);
    }

    /// <summary>
    /// What <c>nvidia-smi -i</c> calls the GPU that ONNX Runtime's device <paramref name="deviceId"/> is: CUDA numbers
    /// the devices <c>CUDA_VISIBLE_DEVICES</c> lists (indices or UUIDs, both of which nvidia-smi takes) from 0, and
    /// all of them when it is not set; null when the ordinal names no visible device. nvidia-smi numbers GPUs in PCI
    /// bus order, so CUDA must too (<c>CUDA_DEVICE_ORDER=PCI_BUS_ID</c>, set in the GPU image) for an index to mean
    /// the same GPU to both on a machine with mixed GPUs.
    /// </summary>
    public static string? NvidiaSmiDevice(int deviceId, string? cudaVisibleDevices)
    {
        if (deviceId < 0) return null;
        if (cudaVisibleDevices is null) return deviceId.ToString(CultureInfo.InvariantCulture);
        var visible = cudaVisibleDevices.Split(',', StringSplitOptions.TrimEntries);
        return deviceId < visible.Length && visible[deviceId].Length > 0 ? visible[deviceId] : null;
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
