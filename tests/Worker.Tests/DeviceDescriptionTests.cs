using Microsoft.Extensions.Logging.Abstractions;

namespace RenderFarm.Worker.Tests;

public sealed class DeviceDescriptionTests
{
    [Fact]
    public void OnTheCpuAWorkerReportsItsCoresAndTheMemoryItMayUse()
    {
        var device = DeviceDescription.Probe("cpu", 0, NullLogger.Instance);

        Assert.Equal($"cpu x{Environment.ProcessorCount}", device.Name);
        Assert.Equal((ulong)GC.GetGCMemoryInfo().TotalAvailableMemoryBytes, device.MemoryBytes);
    }

    [Fact]
    public void OnCudaAWorkerReportsTheGpuNvidiaSmiNamesAndItsMemory()
    {
        using var dir = new TempDirectory();
        var smi = RecordingNvidiaSmi(dir);

        var device = DeviceDescription.Probe("cuda", 0, cudaVisibleDevices: null, NullLogger.Instance, smi);

        Assert.Equal(new DeviceDescription("NVIDIA H100 80GB HBM3", 81559UL * 1024 * 1024), device);
        Assert.Equal("--query-gpu=name,memory.total --format=csv,noheader,nounits -i 0", File.ReadAllText(Path.Combine(dir.Path, "args")).Trim());
    }

    [Theory]
    [InlineData(1, null, "1")]                                   // Farm:DeviceId=1 on a machine showing every GPU
    [InlineData(0, "2", "2")]                                    // one worker per GPU by CUDA_VISIBLE_DEVICES
    [InlineData(1, "2,3", "3")]                                  // the DeviceId-th of the visible ones
    [InlineData(0, "GPU-8e1c2b4a-1f2d-4c3b-9a8e-7d6c5b4a3f21", "GPU-8e1c2b4a-1f2d-4c3b-9a8e-7d6c5b4a3f21")]
    public void TheGpuDescribedIsTheOneTheWorkerRendersOn(int deviceId, string? visible, string nvidiaSmiDevice)
    {
        using var dir = new TempDirectory();
        var smi = RecordingNvidiaSmi(dir);

        var device = DeviceDescription.Probe("tensorrt", deviceId, visible, NullLogger.Instance, smi);

        Assert.Equal("NVIDIA H100 80GB HBM3", device.Name);
        Assert.EndsWith($" -i {nvidiaSmiDevice}", File.ReadAllText(Path.Combine(dir.Path, "args")).Trim());
    }

    [Theory]
    [InlineData(1, "0")]   // the only visible GPU is device 0
    [InlineData(0, "")]    // CUDA_VISIBLE_DEVICES set empty hides every GPU
    public void ADeviceIdThatNamesNoVisibleGpuIsReportedAsTheProviderWithoutAskingNvidiaSmi(int deviceId, string visible)
    {
        using var dir = new TempDirectory();
        var smi = RecordingNvidiaSmi(dir);

        Assert.Equal("cuda", DeviceDescription.Probe("cuda", deviceId, visible, NullLogger.Instance, smi).Name);
        Assert.False(File.Exists(Path.Combine(dir.Path, "args")));
    }

    /// <summary>An nvidia-smi that records its arguments and describes one GPU.</summary>
    private static string RecordingNvidiaSmi(TempDirectory dir) => dir.Script("nvidia-smi", """
        #!/bin/sh
        echo "$@" > "$(dirname "$0")/args"
        echo "NVIDIA H100 80GB HBM3, 81559"
        """);

    [Fact]
    public void WithoutNvidiaSmiOrWithAFailingOneTheProviderNameStandsForTheDevice()
    {
        using var dir = new TempDirectory();
        var failing = dir.Script("nvidia-smi", "#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n");

        Assert.Equal("tensorrt", DeviceDescription.Probe("tensorrt", 0, null, NullLogger.Instance, failing).Name);
        Assert.Equal("cuda", DeviceDescription.Probe("cuda", 0, null, NullLogger.Instance, Path.Combine(dir.Path, "missing")).Name);
    }

    [Theory]
    [InlineData("Tesla T4, 15360\n", "Tesla T4", 15360UL)]
    [InlineData("NVIDIA GeForce RTX 4090, 24564\nNVIDIA GeForce RTX 4090, 24564\n", "NVIDIA GeForce RTX 4090", 24564UL)]
    [InlineData("  A100-SXM4-40GB , 40960 ", "A100-SXM4-40GB", 40960UL)]
    public void ParsesTheFirstGpuLine(string output, string name, ulong mib) =>
        Assert.Equal(new DeviceDescription(name, mib * 1024 * 1024), DeviceDescription.ParseNvidiaSmi(output));

    [Theory]
    [InlineData("")]
    [InlineData("No devices were found")]
    [InlineData("Tesla T4, [N/A]")]
    [InlineData(", 1024")]
    public void RefusesWhatIsNotAGpuLine(string output) => Assert.Null(DeviceDescription.ParseNvidiaSmi(output));

    private sealed class TempDirectory : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("farm-device-").FullName;

        public string Script(string name, string text)
        {
            var path = System.IO.Path.Combine(Path, name);
            File.WriteAllText(path, text.Replace("\r", ""));
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            return path;
        }

        public void Dispose() => Directory.Delete(Path, recursive: true);
    }
}
