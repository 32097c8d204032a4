// LoRA benchmark (bench/lora.md): on an SD 1.5-size model written by the model builder, the time to apply a LoRA set
// (merge + session creation), the memory a cached variant takes, and the cost of switching between cached variants
// against reloading the model.
using RenderFarm.GenerationRules;
using System.Diagnostics;
using RenderFarm.Diffusion;
using RenderFarm.Diffusion.Lora;
using RenderFarm.ModelBuilder;
using RenderFarm.ModelBuilder.Lora;

string preset = args.FirstOrDefault(a => !a.StartsWith("--")) ?? "sd15";
string? model = Option("--model");
int rank = int.Parse(Option("--rank") ?? "32");
int size = int.Parse(Option("--size") ?? "128");
string work = Path.Combine(Environment.GetEnvironmentVariable("TMPDIR") ?? Path.GetTempPath(), "renderfarm-lorabench");
model ??= Path.Combine(work, preset);
var loraDirectory = Path.Combine(work, "loras-" + preset);

if (!File.Exists(Path.Combine(model, "model_index.json")))
{
    Console.WriteLine($"writing {preset} to {model} ...");
    var clock = Stopwatch.StartNew();
    ModelPresets.Write(preset, model, new ModelWriteOptions { Force = true });
    Console.WriteLine($"  {clock.Elapsed.TotalSeconds:F0} s");
}
Directory.CreateDirectory(loraDirectory);
var definition = ModelPresets.Get(preset);
// A: rank-N UNet LoRA on kohya's default targets (attention, feed-forward, proj_in/out), float16 as distributed.
// B: a second one (rank N/2, UNet and text encoder) to switch to. C: A + B, for a two-LoRA set.
var a = LoraFileWriter.Write(definition, Path.Combine(loraDirectory, "a.safetensors"),
    new LoraWriteOptions { Rank = rank, Alpha = rank / 2f, Seed = 1, TextEncoders = false, Type = RenderFarm.ModelBuilder.Graph.ElementType.Float16 });
LoraFileWriter.Write(definition, Path.Combine(loraDirectory, "b.safetensors"),
    new LoraWriteOptions { Rank = Math.Max(1, rank / 2), Seed = 2, Type = RenderFarm.ModelBuilder.Graph.ElementType.Float16 });
long targeted = a.Sum(m => m.TorchShape.Aggregate(4L, (x, d) => x * d));
Console.WriteLine($"LoRA a: rank {rank}, {a.Count} UNet layers, {targeted / 1048576.0:F0} MiB of float32 UNet weights targeted");

var library = new LoraLibrary(loraDirectory);
var clockLoad = Stopwatch.StartNew();
using var pipeline = StableDiffusionPipeline.Load(model, new DiffusionOptions(), new ModelExtensions { Loras = library, MaxCachedVariants = 8 });
var load = clockLoad.Elapsed;
Console.WriteLine($"model load (what a reload costs): {load.TotalSeconds:F2} s, {Memory()}");
library.Get("a"); library.Get("b"); // hash the files once, as a worker does when it lists them

var setA = LoraSet.Of(new LoraWeight("a", 0.8f));
var setB = LoraSet.Of(new LoraWeight("b", 0.6f));
var setAB = setA.With(setB);
var applies = new List<double>();
for (int run = 0; run < 3; run++)
{
    pipeline.ReleaseVariant(setA);
    GC.Collect();
    var clock = Stopwatch.StartNew();
    await pipeline.PrepareVariantAsync(setA);
    applies.Add(clock.Elapsed.TotalSeconds);
}
Console.WriteLine($"apply {{a}} (merge + sessions): runs {string.Join(", ", applies.Select(s => s.ToString("F2")))} s");

long before = Rss("RssAnon");
var infoB = await pipeline.PrepareVariantAsync(setB);
long afterB = Rss("RssAnon");
var infoAB = await pipeline.PrepareVariantAsync(setAB);
long afterAB = Rss("RssAnon");
var infoA = pipeline.Variants.Single(v => v.Loras.Equals(setA));
foreach (var info in new[] { infoA, infoB!, infoAB! })
    Console.WriteLine($"variant {info.Loras}: {info.OverrideBytes / 1048576.0:F0} MiB own weights ({string.Join(", ", info.Components)}), built in {info.BuildTime.TotalSeconds:F2} s");
Console.WriteLine($"anonymous memory growth when built: +{(afterB - before) / 1048576.0:F0} MiB for {{b}}, +{(afterAB - afterB) / 1048576.0:F0} MiB for {{a, b}}");

// Switching: 1-step renders alternating between cached variants against the same variant twice.
var request = new GenerationRequest([new ImagePrompt("a lighthouse", "", 1)], size, size, 1, 7.5f, "euler", preset);
await pipeline.GenerateAsync(request with { Loras = setA });
await pipeline.GenerateAsync(request with { Loras = setB });
var times = new List<(string, double)>();
foreach (var set in new[] { setA, setA, setB, setA, setB, LoraSet.Empty, setAB, setA })
{
    var clock = Stopwatch.StartNew();
    await pipeline.GenerateAsync(request with { Loras = set });
    times.Add((set.IsEmpty ? "plain" : set.ToString(), clock.Elapsed.TotalSeconds));
}
Console.WriteLine($"1-step {size}x{size} renders in order: {string.Join("; ", times.Select(t => $"{t.Item1} {t.Item2:F2} s"))}");
Console.WriteLine($"after the renders: {Memory()}; variants kept: {pipeline.Variants.Count}, their own weights {pipeline.Variants.Sum(v => v.OverrideBytes) / 1048576.0:F0} MiB");

string? Option(string name) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault();
// Resident memory from /proc/self/status. RssAnon is private memory (merged weights, ONNX Runtime's own); RssFile is
// mapped file pages, which each session's mapping of the shared weights file counts again although the page cache
// holds them once.
static long Rss(string field = "VmRSS") => long.Parse(File.ReadLines("/proc/self/status").First(l => l.StartsWith(field + ":")).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
static string Memory() => $"RSS {Rss() / 1048576.0:F0} MiB (anonymous {Rss("RssAnon") / 1048576.0:F0} MiB, file-backed {Rss("RssFile") / 1048576.0:F0} MiB)";
