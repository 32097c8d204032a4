// What live previews cost a render, for both preview decoders in one run: the latent-to-RGB approximation (the model
// directory as written) and a TAESD decoder (the same directory, linked file by file, plus vae_decoder_tiny/ with
// TAESD's real widths 64/64/64/64 and 3/3/3/1 blocks, written once next to it). The same request is rendered with no
// previews, a preview every 5 steps and one every step, for each decoder, interleaved (each iteration runs the six
// cases in a rotated order, so drift in the machine's load falls on all of them), timing the whole render including
// what the worker does with each preview (a PNG per image, on the render's thread, as the worker's step reporter
// does). Previews are capped as a worker caps them (--max-side, default Farm:PreviewMaxSide's 256). See bench/dashboard.md.
//
//   dotnet run -c Release --project bench/PreviewBench -- tiny                     (writes /tmp/previewbench-tiny once)
//   dotnet run -c Release --project bench/PreviewBench -- sd15 --dir /tmp/sd15 --write --size 512 --steps 10 --iterations 2
// Options: --steps 20  --size 64  --batch 1  --iterations 5  --dir DIR  --write  --max-side 256
using System.Diagnostics;
using System.Globalization;
using RenderFarm.Diffusion;
using RenderFarm.ModelBuilder;
using RenderFarm.ModelBuilder.Components;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
var preset = args.Length > 0 && !args[0].StartsWith('-') ? args[0] : "tiny";
string Arg(string name, string fallback) { var i = Array.IndexOf(args, name); return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback; }
int steps = int.Parse(Arg("--steps", "20")), size = int.Parse(Arg("--size", "64")), batch = int.Parse(Arg("--batch", "1"));
int iterations = int.Parse(Arg("--iterations", "5"));
int maxSide = int.Parse(Arg("--max-side", RenderFarm.GenerationRules.PreviewSizeRule.DefaultMaxSide.ToString()));
var dir = Arg("--dir", $"/tmp/previewbench-{preset}");
Console.WriteLine($"# {preset}: {Environment.ProcessorCount} cores, load average {File.ReadAllText("/proc/loadavg").Split(' ')[0]}, " +
    $"{size}x{size}, {steps} steps, batch {batch}, {iterations} iterations per case, previews capped at {maxSide} px, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
if (!File.Exists(Path.Combine(dir, "unet", "model.onnx")))
{
    if (preset != "tiny" && !args.Contains("--write")) { Console.Error.WriteLine($"{dir} has no model; pass --write to create {preset} there"); return 2; }
    var write = Stopwatch.StartNew();
    ModelPresets.Write(preset, dir);
    Console.WriteLine($"wrote {preset} to {dir} in {write.Elapsed.TotalSeconds:F0} s");
}
var taesdDir = WithTaesd(dir);
var options = new DiffusionOptions { PreviewMaxSide = maxSide };
using var latent = StableDiffusionPipeline.Load(dir, options);
using var taesd = StableDiffusionPipeline.Load(taesdDir, options);
if (latent.DecodesPreviews || !taesd.DecodesPreviews) { Console.Error.WriteLine($"{dir} must have no vae_decoder_tiny/ (the latent approximation's case)"); return 2; }
var pipelines = new (string Name, StableDiffusionPipeline Pipeline)[] { ("latent-to-RGB approximation", latent), ("TAESD decoder", taesd) };

int n = 0;
GenerationRequest Request(int every) => new(Enumerable.Range(0, batch).Select(i => new ImagePrompt($"a lighthouse in a storm {n++} {i}", "", 1 + i)).ToArray(),
    size, size, steps, 7.5f) { Previews = every > 0, PreviewEvery = Math.Max(1, every) };
foreach (var (_, pipeline) in pipelines) await pipeline.GenerateAsync(Request(1) with { Steps = 2 }); // warm-up: JIT and sessions

int[] modes = [0, 5, 1];
var cases = pipelines.SelectMany((p, d) => modes.Select(m => (Decoder: d, Every: m))).ToArray();
var times = cases.ToDictionary(c => c, _ => new List<double>());
var previews = pipelines.Select(_ => (Bytes: new List<int>(), Ms: new List<double>(), Size: new HashSet<string>())).ToArray();
for (int it = 0; it < iterations; it++)
{
    for (int k = 0; k < cases.Length; k++)
    {
        var c = cases[(k + it) % cases.Length];
        var progress = new PngEveryPreview(previews[c.Decoder].Bytes, previews[c.Decoder].Ms, previews[c.Decoder].Size);
        var clock = Stopwatch.StartNew();
        await pipelines[c.Decoder].Pipeline.GenerateAsync(Request(c.Every), progress);
        times[c].Add(clock.Elapsed.TotalMilliseconds);
        Console.Error.WriteLine($"  {pipelines[c.Decoder].Name}, every {c.Every}: {clock.Elapsed.TotalMilliseconds:F0} ms");
    }
}
double Median(IEnumerable<double> v) { var s = v.Order().ToArray(); return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2; }
Console.WriteLine();
Console.WriteLine("| decoder | previews | render, ms (median) | each run, ms | vs none |");
Console.WriteLine("|---|---|---|---|---|");
for (int d = 0; d < pipelines.Length; d++)
{
    var none = Median(times[(d, 0)]);
    foreach (var m in modes)
        Console.WriteLine($"| {pipelines[d].Name} | {(m == 0 ? "none" : m == 1 ? "every step" : $"every {m} steps")} | {Median(times[(d, m)]):F0} | " +
            $"{string.Join(", ", times[(d, m)].Select(t => t.ToString("F0")))} | {(Median(times[(d, m)]) / none - 1) * 100:+0.0;-0.0}% |");
}
Console.WriteLine();
var step = Median(cases.Where(c => c.Every == 0).SelectMany(c => times[c])) / steps;
Console.WriteLine("| decoder | preview size | one preview + its PNG per image, ms (median) | per previewed step | at every 5 steps | PNG bytes (median, max) |");
Console.WriteLine("|---|---|---|---|---|---|");
for (int d = 0; d < pipelines.Length; d++)
{
    var ms = Median(previews[d].Ms) * batch;
    Console.WriteLine($"| {pipelines[d].Name} | {string.Join(", ", previews[d].Size)} | {Median(previews[d].Ms):F2} | {ms / step * 100:F2} % | {ms / step / 5 * 100:F2} % | " +
        $"{Median(previews[d].Bytes.Select(b => (double)b)):F0}, {previews[d].Bytes.Max()} |");
}
Console.WriteLine($"\none step without previews (median over both decoders' renders): {step:F1} ms");
return 0;

// The model directory again, each entry linked (no copy: an sd15-size model is 4.3 GB), plus a TAESD decoder.
static string WithTaesd(string dir)
{
    var target = dir.TrimEnd('/') + "-taesd";
    var decoder = Path.Combine(target, StableDiffusionPipeline.PreviewDecoderComponent);
    if (File.Exists(Path.Combine(decoder, "model.onnx"))) return target;
    Directory.CreateDirectory(target);
    foreach (var entry in Directory.EnumerateFileSystemEntries(dir))
    {
        var link = Path.Combine(target, Path.GetFileName(entry));
        if (!Path.Exists(link)) File.CreateSymbolicLink(link, Path.GetFullPath(entry));
    }
    Directory.CreateDirectory(decoder);
    var graph = TinyDecoderBuilder.Build(new TinyDecoderConfig([64, 64, 64, 64], [3, 3, 3, 1]), new RenderFarm.ModelBuilder.Graph.GraphOptions());
    OnnxModelWriter.Write(graph, Path.Combine(decoder, "model.onnx"), seed: 1);
    return target;
}

/// <summary>Encodes every preview image's PNG as the worker's step reporter does, timing it.</summary>
sealed class PngEveryPreview(List<int> bytes, List<double> ms, HashSet<string> sizes) : IProgress<StepProgress>
{
    public void Report(StepProgress value)
    {
        if (value.Preview is not { } preview) return;
        sizes.Add($"{preview.Width}x{preview.Height}");
        for (int i = 0; i < preview.Count; i++)
        {
            var clock = Stopwatch.StartNew();
            var png = preview.Png(i);
            ms.Add(clock.Elapsed.TotalMilliseconds);
            bytes.Add(png.Length);
        }
    }
}
