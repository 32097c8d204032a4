using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;

namespace RenderFarm.Worker.Models;

/// <summary>
/// How much memory the worker's models take, read off the device they live on: on a GPU worker the GPU's memory in use
/// (nvidia-smi's <c>memory.used</c> of the worker's GPU: one worker per GPU, so that is this process's), on a CPU worker
/// the process's resident memory, after returning freed heap to the system (the GC, then glibc's <c>malloc_trim</c>),
/// so that what an evicted model freed does not hide what the next one takes. <see cref="ModelCatalog"/> reads it
/// before and after it loads a model: the difference is the model's footprint.
/// </summary>
public class MemoryGauge(string executionProvider, string? nvidiaSmiDevice, ILogger<MemoryGauge> logger)
{
    private static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(5);
    private bool _gpuUnreadable;

    /// <summary>Bytes in use now on the models' device.</summary>
    public virtual long Used()
    {
        if (executionProvider is "cuda" or "tensorrt" && nvidiaSmiDevice is not null && !_gpuUnreadable)
        {
            if (GpuUsed() is { } used) return used;
            _gpuUnreadable = true;
            logger.LogWarning("Cannot read GPU {Device}'s memory with nvidia-smi: model footprints are measured in host memory instead", nvidiaSmiDevice);
        }
        return HostResident();
    }

    private static long HostResident()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        if (OperatingSystem.IsLinux())
        {
            try
            {
                MallocTrim(0);
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
                // Not glibc (musl): freed heap stays counted until reused, so a later load measures low, never high.
            }
        }
        using var self = Process.GetCurrentProcess();
        return self.WorkingSet64;
    }

    private long? GpuUsed()
    {
        try
        {
            var (code, output) = NvidiaSmi.Query("nvidia-smi", "memory.used", nvidiaSmiDevice!, ProbeTimeout);
            return code == 0 && long.TryParse(output.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var mib)
                ? mib * 1024 * 1024
                : null;
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or TimeoutException)
        {
            return null;
        }
    }

    [DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(nuint pad);
}
