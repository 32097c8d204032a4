// Tiled upscaler benchmark (bench/upscale.md): UpscalerLibrary.Upscale on 8-bit RGB, as a worker calls it, for a few
// image sizes with the builder's tiny ×4 RRDBNet and one small image with the ×4 RRDBNet at RealESRGAN_x4plus's sizes.
// Per image: wall time, managed bytes allocated during the call (GC.GetTotalAllocatedBytes) and the growth of the
// process's peak resident set (VmHWM, reset through /proc/self/clear_refs before each call; it includes ONNX Runtime's
// native memory for a tile), each also per output byte (3 bytes a pixel), and the model runs (tiles) it took. Presets are written once under --dir.
//
//   dotnet run -c Release --project bench/UpscaleBench -- --dir /tmp/upscalebench
// Options: --sizes 256,1024,2048 (tiny ×4 input sides)  --real-size 96  --real-tile 64  --real-overlap 16
//          --tile 256  --overlap 32  --no-real
using System.Diagnostics;
using System.Globalization;
using RenderFarm.Diffusion.Upscaling;
using RenderFarm.ModelBuilder.Upscalers;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
string Arg(string name, string fallback) { var i = Array.IndexOf(args, name); return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback; }
var sizes = Arg("--sizes", "256,1024,2048").Split(',').Select(int.Parse).ToArray();
int realSize = int.Parse(Arg("--real-size", "96"));
var tiling = new UpscaleTiling { TileSize = int.Parse(Arg("--tile", "256")), Overlap = int.Parse(Arg("--overlap", "32")) };
var realTiling = new UpscaleTiling { TileSize = int.Parse(Arg("--real-tile", "64")), Overlap = int.Parse(Arg("--real-overlap", "16")) };
var dir = Path.GetFullPath(Arg("--dir", Path.Combine(Path.GetTempPath(), "upscalebench")));
bool real = !args.Contains("--no-real");

Console.WriteLine($"# {Environment.ProcessorCount} cores, load average {File.ReadAllText("/proc/loadavg").Split(' ')[0]}, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
foreach (var (preset, wanted) in new[] { ("rrdb-tiny-x4", true), ("realesrgan-x4", real) })
{
    if (wanted && !File.Exists(Path.Combine(dir, preset, "model.onnx"))) UpscalerPresets.Write(preset, Path.Combine(dir, preset), seed: 1);
}
using var library = new UpscalerLibrary(dir);

var cases = sizes.Select(s => ("rrdb-tiny-x4", s, tiling)).ToList();
if (real) cases.Add(("realesrgan-x4", realSize, realTiling));
library.Upscale("rrdb-tiny-x4", Picture(64, 64), 64, 64, tiling); // warm-up: JIT, session
if (real) library.Upscale("realesrgan-x4", Picture(16, 16), 16, 16, realTiling);

Console.WriteLine();
Console.WriteLine("| upscaler | input | output | tile / overlap | model runs | time, s | allocated, MB | per output byte | peak RSS growth, MB | per output byte |");
Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|");
foreach (var (name, side, caseTiling) in cases)
{
    var picture = Picture(side, side);
    GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
    GC.WaitForPendingFinalizers();
    long rssBefore = Status("VmRSS");
    File.WriteAllText("/proc/self/clear_refs", "5"); // resets VmHWM to the current RSS
    long runsBefore = Runs(name);
    long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
    var clock = Stopwatch.StartNew();
    var (rgb, width, height) = library.Upscale(name, picture, side, side, caseTiling);
    clock.Stop();
    long allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
    long peak = Status("VmHWM") - rssBefore;
    double outBytes = rgb.Length;
    Console.WriteLine($"| {name} | {side}² | {width}x{height} | {caseTiling.TileSize} / {caseTiling.Overlap} | {Runs(name) - runsBefore} | {clock.Elapsed.TotalSeconds:F2} | " +
        $"{allocated / 1048576.0:F0} | {allocated / outBytes:F2} | {peak / 1048576.0:F0} | {peak / outBytes:F2} |");
}
return 0;

long Runs(string name) => library.Statistics.Single(s => s.Upscaler == name).Runs;

// Random pixels: the upscaler's memory and time do not depend on what the picture shows.
static byte[] Picture(int width, int height)
{
    var rgb = new byte[width * height * 3];
    new Random(1).NextBytes(rgb);
    return rgb;
}

// A /proc/self/status field in bytes (VmRSS, VmHWM).
static long Status(string field) =>
    long.Parse(File.ReadLines("/proc/self/status").First(l => l.StartsWith(field + ":"))[(field.Length + 1)..].Trim().Split(' ')[0]) * 1024;
