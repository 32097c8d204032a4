using Microsoft.Extensions.Logging.Abstractions;
using RenderFarm.Worker;

namespace RenderFarm.Farm.Tests;

public sealed class DeviceDescriptionTests
{
    [Fact]
    public void OnTheCpuAWorkerReportsItsCoresAndTheMemoryItMayUse()
    {
        var device = DeviceDescription.Probe("cpu", NullLogger.Instance);

        Assert.Equal($"cpu x{Environment.ProcessorCount}", device.Name);
        Assert.Equal((ulong)GC.GetGCMemoryInfo().TotalAvailableMemoryBytes, device.MemoryBytes);
    }

    [Fact]
    public void OnCudaAWorkerReportsTheGpuNvidiaSmiNamesAndItsMemory()
    {
        using var dir = new TempDirectory();
        var smi = dir.Script("nvidia-smi", """
            #!/bin/sh
            echo "$@" > "$(dirname "$0")/args"
            echo "NVIDIA H100 80GB HBM3, 81559"
            """);

        var device = DeviceDescription.Probe("cuda", NullLogger.Instance, smi);

        Assert.Equal(new DeviceDescription("NVIDIA H100 80GB HBM3", 81559UL * 1024 * 1024), device);
        Assert.Equal("--query-gpu=name,memory.total --format=csv,noheader,nounits -i 0", File.ReadAllText(Path.Combine(dir.Path, "args")).Trim());
    }

    [Fact]
    public void WithoutNvidiaSmiOrWithAFailingOneTheProviderNameStandsForTheDevice()
    {
        using var dir = new TempDirectory();
        var failing = dir.Script("nvidia-smi", "#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n");

        Assert.Equal("tensorrt", DeviceDescription.Probe("tensorrt", NullLogger.Instance, failing).Name);
        Assert.Equal("cuda", DeviceDescription.Probe("cuda", NullLogger.Instance, Path.Combine(dir.Path, "missing")).Name);
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
