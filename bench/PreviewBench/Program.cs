// What live previews cost a render: the same request rendered with no previews, a preview every 5 steps and one every
// step, interleaved (each iteration runs the modes in a rotated order, so drift in the machine's load falls on all of
// them), timing the whole render including what the worker does with each preview (a PNG per image, on the render's
// thread, as the worker's step reporter does). See bench/dashboard.md.
//
//   dotnet run -c Release --project bench/PreviewBench -- tiny                     (writes /tmp/previewbench-tiny once)
//   dotnet run -c Release --project bench/PreviewBench -- sd15 --dir /tmp/sd15 --write --size 256 --steps 10
// Options: --steps 20  --size 64  --batch 1  --iterations 5  --dir DIR  --write
using System.Diagnostics;
using System.Globalization;
using RenderFarm.Diffusion;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
var preset = args.Length > 0 && !args[0].StartsWith('-') ? args[0] : "tiny";
string Arg(string name, string fallback) { var i = Array.IndexOf(args, name); return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback; }
int steps = int.Parse(Arg("--steps", "20")), size = int.Parse(Arg("--size", "64")), batch = int.Parse(Arg("--batch", "1"));
int iterations = int.Parse(Arg("--iterations", "5"));
var dir = Arg("--dir", $"/tmp/previewbench-{preset}");
Console.WriteLine($"# {preset}: {Environment.ProcessorCount} cores, load average {File.ReadAllText("/proc/loadavg").Split(' ')[0]}, " +
    $"{size}x{size}, {steps} steps, batch {batch}, {iterations} iterations per mode, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
if (!File.Exists(Path.Combine(dir, "unet", "model.onnx")))
{
    if (preset != "tiny" && !args.Contains("--write")) { Console.Error.WriteLine($"{dir} has no model; pass --write to create {preset} there"); return 2; }
    var write = Stopwatch.StartNew();
    RenderFarm.ModelBuilder.ModelPresets.Write(preset, dir);
    Console.WriteLine($"wrote {preset} to {dir} in {write.Elapsed.TotalSeconds:F0} s");
}
using var pipeline = StableDiffusionPipeline.Load(dir);
var decoder = File.Exists(Path.Combine(dir, "vae_decoder_tiny", "model.onnx")) ? "tiny decoder (vae_decoder_tiny)" : "latent-to-RGB approximation";
Console.WriteLine($"previews by the {decoder}");

int n = 0;
GenerationRequest Request(int every) => new(Enumerable.Range(0, batch).Select(i => new ImagePrompt($"a lighthouse in a storm {n++} {i}", "", 1 + i)).ToArray(),
    size, size, steps, 7.5f) { Previews = every > 0, PreviewEvery = Math.Max(1, every) };
await pipeline.GenerateAsync(Request(1) with { Steps = 2 }); // warm-up: JIT and sessions

int[] modes = [0, 5, 1];
var times = modes.ToDictionary(m => m, _ => new List<double>());
var previewBytes = new List<int>();
var previewMs = new List<double>();
for (int it = 0; it < iterations; it++)
{
    for (int k = 0; k < modes.Length; k++)
    {
        var every = modes[(k + it) % modes.Length];
        var progress = new PngEveryPreview(previewBytes, previewMs);
        var clock = Stopwatch.StartNew();
        await pipeline.GenerateAsync(Request(every), progress);
        times[every].Add(clock.Elapsed.TotalMilliseconds);
    }
}
double Median(IEnumerable<double> v) { var s = v.Order().ToArray(); return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2; }
var none = Median(times[0]);
Console.WriteLine();
Console.WriteLine("| previews | render, ms (median) | each run, ms | vs none |");
Console.WriteLine("|---|---|---|---|");
foreach (var m in modes)
    Console.WriteLine($"| {(m == 0 ? "none" : m == 1 ? "every step" : $"every {m} steps")} | {Median(times[m]):F0} | {string.Join(", ", times[m].Select(t => t.ToString("F0")))} | {(Median(times[m]) / none - 1) * 100:+0.0;-0.0}% |");
Console.WriteLine();
Console.WriteLine($"one preview (making it, then its PNG), per image: median {Median(previewMs):F2} ms, PNG {Median(previewBytes.Select(b => (double)b)):F0} bytes " +
    $"(max {previewBytes.Max()}); one step without previews: {none / steps:F1} ms");
return 0;

/// <summary>Encodes every preview image's PNG as the worker's step reporter does, timing it.</summary>
sealed class PngEveryPreview(List<int> bytes, List<double> ms) : IProgress<StepProgress>
{
    public void Report(StepProgress value)
    {
        if (value.Preview is not { } preview) return;
        for (int i = 0; i < preview.Count; i++)
        {
            var clock = Stopwatch.StartNew();
            var png = preview.Png(i);
            ms.Add(clock.Elapsed.TotalMilliseconds);
            bytes.Add(png.Length);
        }
    }
}
