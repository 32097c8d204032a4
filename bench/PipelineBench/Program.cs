// Pipeline overhead benchmark: StableDiffusionPipeline per-image time vs the bare InferenceSession.Run calls of the
// same components on same-shaped inputs, peak RSS vs model bytes, and PNG encoder timings. See bench/pipeline.md.
//
//   dotnet run -c Release --project bench/PipelineBench -- tiny                      (writes /tmp/pipelinebench-tiny once)
//   dotnet run -c Release --project bench/PipelineBench -- sd15 --dir /tmp/sd15      (--write creates it: ~12 s, 4 GB)
//   dotnet run -c Release --project bench/PipelineBench -- png                       (PNG encoders only)
// Options: --batch 1,4  --steps 20  --size 64  --iterations 15  --scheduler euler  --dir DIR  --write
//          --arena on|off (ORT CPU memory arena, default off like DiffusionOptions)  --pipeline-only (no bare sessions)
using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using RenderFarm.Diffusion;
using Filter = RenderFarm.Diffusion.Imaging.PngEncoder.RowFilter;
using Strategy = System.IO.Compression.ZLibCompressionStrategy;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;

var options = Options.Parse(args);
Console.WriteLine($"# {options.Preset}: {Environment.ProcessorCount} cores, load average {Bench.LoadAverage()}, .NET {Environment.Version}, " +
    $"ORT {OrtEnv.Instance().GetVersionString()}, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
if (options.Preset == "png")
{
    PngBench.Run(options.Size == 64 ? [64, 512] : [options.Size], options.Iterations);
    return;
}

var dir = options.Directory;
if (!File.Exists(Path.Combine(dir, "unet", "model.onnx")))
{
    if (options.Preset != "tiny" && !options.Write)
    {
        Console.Error.WriteLine($"{dir} has no model; pass --write to create the {options.Preset} preset there (sd15: ~12 s, 4 GB).");
        Environment.Exit(2);
    }
    var sw = Stopwatch.StartNew();
    RenderFarm.ModelBuilder.ModelPresets.Write(options.Preset, dir);
    Console.WriteLine($"wrote {options.Preset} to {dir} in {sw.Elapsed.TotalSeconds:F1} s");
}

var modelBytes = Bench.ComponentBytes(dir);
Console.WriteLine($"model {dir}: {Bench.Mib(modelBytes.Values.Sum())} on disk ({string.Join(", ", modelBytes.Select(kv => $"{kv.Key} {Bench.Mib(kv.Value)}"))})");
Console.WriteLine($"sessions: ORT_ENABLE_EXTENDED, no prepacking, CPU memory arena {(options.Arena ? "on" : "off")}, default threads (pipeline and bare alike)");
Console.WriteLine($"request: {options.Size}x{options.Size}, {options.Steps} steps, {options.Scheduler}, CFG 7.5 (UNet batch 2B), {options.Iterations} timed iterations after a warm-up to JIT steady state");

// Phase 1, pipeline alone: load, warm up, one timed request per batch size; then peak RSS (before any bare session exists).
var loadClock = Stopwatch.StartNew();
using var pipeline = StableDiffusionPipeline.Load(dir, new DiffusionOptions { CpuMemoryArena = options.Arena });
double loadSeconds = loadClock.Elapsed.TotalSeconds;
var (rssAfterLoad, _) = Bench.Rss();
// Every request has new prompts (the pipeline keeps the tokens of recent prompts; a farm's negative prompt repeats).
int requestNumber = 0;
GenerationRequest Request(int batch, int steps)
{
    int n = requestNumber++;
    return new(Enumerable.Range(0, batch).Select(i => new ImagePrompt($"a photograph of an astronaut riding a horse, request {n} image {i}", "blurry, lowres", 1000 + i)).ToArray(),
        options.Size, options.Size, steps, 7.5f, options.Scheduler, options.Preset);
}
await pipeline.GenerateAsync(Request(options.Batches.Max(), 1));
var firstImages = new Dictionary<int, IReadOnlyList<GeneratedImage>>();
var pipelineTimes = options.Batches.ToDictionary(b => b, _ => new List<double>());
// With --pipeline-only, --iterations requests per batch size: a loop to profile (perf record with DOTNET_PerfMapEnabled=1).
foreach (var batch in options.Batches)
{
    for (int k = 0; k < (options.PipelineOnly ? options.Iterations : 1); k++)
    {
        var sw = Stopwatch.StartNew();
        firstImages[batch] = await pipeline.GenerateAsync(Request(batch, options.Steps));
        pipelineTimes[batch].Add(sw.Elapsed.TotalMilliseconds);
    }
}
var (rssPipeline, hwmPipeline) = Bench.Rss();
Console.WriteLine($"after rendering: {Bench.Status("RssAnon")} anonymous, {Bench.Status("RssFile")} file-backed (memory-mapped weights)");
long used = modelBytes.Where(kv => kv.Key != "vae_encoder").Sum(kv => kv.Value);
Console.WriteLine($"pipeline load {loadSeconds:F2} s, RSS after load {Bench.Mib(rssAfterLoad)}; after rendering: RSS {Bench.Mib(rssPipeline)}, " +
    $"peak (VmHWM) {Bench.Mib(hwmPipeline)} = {(double)hwmPipeline / modelBytes.Values.Sum():F2}× all model bytes, " +
    $"{(double)hwmPipeline / used:F2}× the bytes of the components a txt2img run executes ({Bench.Mib(used)})");

// Phase 2: bare sessions with the pipeline's session options, interleaved with pipeline runs (alternating order).
if (options.PipelineOnly)
{
    Console.WriteLine("pipeline times (ms): " + string.Join("; ", pipelineTimes.Select(kv => $"B={kv.Key}: {string.Join(", ", kv.Value.Select(Bench.Ms))}")));
    return;
}
using var bare = new BareRun(dir, options.Size, options.Arena);
var bareTimes = options.Batches.ToDictionary(b => b, _ => new List<(double Text, double UNet, double Vae)>());
// Per pipeline request, from StableDiffusionPipeline.Statistics: its own work (outside ONNX Runtime) and its model runs.
var pipelineSplit = options.Batches.ToDictionary(b => b, _ => new List<(double Own, double Models, double Text, double UNet, double Vae)>());

// Page faults and managed allocations per request, counted outside the timed regions: on this VM a minor fault costs
// ~13 µs, so memory a request touches for the first time shows up in its time (bench/pipeline.md).
var pipelineCost = new Cost();
var bareCost = new Cost();
(double Text, double UNet, double Vae) RunBare(int batch)
{
    var start = Cost.Now();
    var times = bare.Run(batch, options.Steps);
    bareCost.Add(batch, start);
    return times;
}
// One round: per batch size, a bare pass and a pipeline request; which goes first alternates with k.
async Task Round(int k)
{
    foreach (var batch in options.Batches)
    {
        if (k % 2 == 0) bareTimes[batch].Add(RunBare(batch));
        var start = Cost.Now();
        var before = pipeline.Statistics;
        var sw = Stopwatch.StartNew();
        await pipeline.GenerateAsync(Request(batch, options.Steps));
        pipelineTimes[batch].Add(sw.Elapsed.TotalMilliseconds);
        var after = pipeline.Statistics;
        pipelineCost.Add(batch, start);
        // Own work: while holding the models, plus the PNG encoding after them (sequential requests: nothing overlaps it).
        double own = (after.OwnWork - before.OwnWork + after.Encoding - before.Encoding).TotalMilliseconds;
        double In(string component) =>
            (after.Components.Single(c => c.Component == component).RunTime - before.Components.Single(c => c.Component == component).RunTime).TotalMilliseconds;
        pipelineSplit[batch].Add((own, (after.Generating - before.Generating + after.Encoding - before.Encoding).TotalMilliseconds - own, In("text_encoder"), In("unet"), In("vae_decoder")));
        if (k % 2 == 1) bareTimes[batch].Add(RunBare(batch));
    }
}

// Warm up to steady state before timing, with the timed rounds' own code. Tiered compilation re-JITs hot methods
// (tier 0, instrumented, tier 1) on a background thread for the first ~100 tiny requests (~1.1 s of JIT, 2,300
// methods, here); on 2 cores that thread competes with ORT's, and tiny requests ran ~25 % slower until it went quiet.
// A worker is past that within its first minutes, so the steady state is the figure to compare. Rounds until 10 in a
// row compile nothing, for at most 60 s.
var warmClock = Stopwatch.StartNew();
int warmRounds = 0;
for (int quiet = 0; quiet < 10 && warmClock.Elapsed < TimeSpan.FromSeconds(60); warmRounds++)
{
    long methods = System.Runtime.JitInfo.GetCompiledMethodCount();
    await Round(warmRounds);
    quiet = System.Runtime.JitInfo.GetCompiledMethodCount() == methods ? quiet + 1 : 0;
}
Console.WriteLine($"warm-up: {warmRounds} rounds in {warmClock.Elapsed.TotalSeconds:F1} s; JIT so far {System.Runtime.JitInfo.GetCompiledMethodCount()} methods, " +
    $"{System.Runtime.JitInfo.GetCompilationTime().TotalMilliseconds:F0} ms");
foreach (var times in pipelineTimes.Values) times.Clear(); // phase 1's and the warm-up's
foreach (var times in bareTimes.Values) times.Clear();
foreach (var split in pipelineSplit.Values) split.Clear();
pipelineCost = new Cost();
bareCost = new Cost();
var jit0 = (Methods: System.Runtime.JitInfo.GetCompiledMethodCount(), Time: System.Runtime.JitInfo.GetCompilationTime());
var gcPause0 = GC.GetTotalPauseDuration();
int gc0 = GC.CollectionCount(0);
for (int k = 0; k < options.Iterations; k++)
{
    await Round(k);
}
var (_, hwmAll) = Bench.Rss();
Console.WriteLine($"JIT during the timed rounds: {System.Runtime.JitInfo.GetCompiledMethodCount() - jit0.Methods} methods, " +
    $"{(System.Runtime.JitInfo.GetCompilationTime() - jit0.Time).TotalMilliseconds:F1} ms");
Console.WriteLine("per request: " + string.Join("; ", options.Batches.Select(b =>
    $"B={b} pipeline {pipelineCost.Describe(b)}, bare {bareCost.Describe(b)}")) +
    $"; {GC.CollectionCount(0) - gc0} gen0 GCs, {(GC.GetTotalPauseDuration() - gcPause0).TotalMilliseconds:F1} ms paused in all");

Console.WriteLine();
Console.WriteLine("| batch B | pipeline total | per image | bare total | per image | text | UNet (per step) | VAE | PNG/image (in pipeline's encoder) | ratio (medians) | ratio (minima) | ratio (median of pairs) |");
Console.WriteLine("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
foreach (var batch in options.Batches)
{
    double pipe = Bench.Median(pipelineTimes[batch]);
    var b = bareTimes[batch];
    double text = Bench.Median(b.Select(x => x.Text)), unet = Bench.Median(b.Select(x => x.UNet)), vae = Bench.Median(b.Select(x => x.Vae));
    double bareTotal = Bench.Median(b.Select(x => x.Text + x.UNet + x.Vae));
    double png = PngBench.TimeEncode(firstImages[batch][0].Png, 3);
    Console.WriteLine($"| {batch} | {Bench.Ms(pipe)} | {Bench.Ms(pipe / batch)} | {Bench.Ms(bareTotal)} | {Bench.Ms(bareTotal / batch)} | {Bench.Ms(text)} | " +
        $"{Bench.Ms(unet)} ({Bench.Ms(unet / options.Steps)}) | {Bench.Ms(vae)} | {Bench.Ms(png)} | **{pipe / bareTotal:F3}×** | " +
        $"{pipelineTimes[batch].Min() / b.Min(x => x.Text + x.UNet + x.Vae):F3}× | " +
        $"{Bench.Median(pipelineTimes[batch].Zip(b, (p, x) => p / (x.Text + x.UNet + x.Vae))):F3}× |");
}
Console.WriteLine();
Console.WriteLine("Where the pipeline's time goes (StableDiffusionPipeline.Statistics, per request): its own work outside ONNX Runtime, " +
    "and its model runs against the bare runs of the same round.");
Console.WriteLine();
Console.WriteLine("| batch B | own work (median) | own work (min) | share of pipeline time | model runs in the pipeline / bare (median of pairs) | text | UNet | VAE |");
Console.WriteLine("|--:|--:|--:|--:|--:|--:|--:|--:|");
foreach (var batch in options.Batches)
{
    var split = pipelineSplit[batch];
    Console.WriteLine($"| {batch} | {Bench.Median(split.Select(x => x.Own)):F3} ms | {split.Min(x => x.Own):F3} ms | " +
        $"{Bench.Median(split.Zip(pipelineTimes[batch], (x, total) => x.Own / total)) * 100:F2} % | " +
        $"{Bench.Median(split.Zip(bareTimes[batch], (x, b) => x.Models / (b.Text + b.UNet + b.Vae))):F3}× | " +
        $"{Bench.Median(split.Zip(bareTimes[batch], (x, b) => x.Text / b.Text)):F3}× | {Bench.Median(split.Zip(bareTimes[batch], (x, b) => x.UNet / b.UNet)):F3}× | " +
        $"{Bench.Median(split.Zip(bareTimes[batch], (x, b) => x.Vae / b.Vae)):F3}× |");
}
Console.WriteLine();
Console.WriteLine("spread (min–max): " + string.Join("; ", options.Batches.Select(batch =>
    $"B={batch} pipeline {Bench.Ms(pipelineTimes[batch].Min())}–{Bench.Ms(pipelineTimes[batch].Max())}, " +
    $"bare {Bench.Ms(bareTimes[batch].Min(x => x.Text + x.UNet + x.Vae))}–{Bench.Ms(bareTimes[batch].Max(x => x.Text + x.UNet + x.Vae))}")));
Console.WriteLine($"peak RSS with the bare sessions also open: {Bench.Mib(hwmAll)}; load average now {Bench.LoadAverage()}");

/// <summary>The three component calls of a txt2img request, on bare sessions and same-shaped inputs.</summary>
internal sealed class BareRun : IDisposable
{
    private readonly InferenceSession _text, _unet, _vae;
    private readonly int _latent;
    private readonly Random _random = new(7);

    public BareRun(string dir, int size, bool arena)
    {
        // The pipeline's defaults (DiffusionOptions): ORT_ENABLE_EXTENDED, no prepacking, sequential, default threads.
        using var so = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_EXTENDED, ExecutionMode = ExecutionMode.ORT_SEQUENTIAL, EnableCpuMemArena = arena };
        so.AddSessionConfigEntry("session.disable_prepacking", "1");
        _text = new InferenceSession(Path.Combine(dir, "text_encoder", "model.onnx"), so);
        _unet = new InferenceSession(Path.Combine(dir, "unet", "model.onnx"), so);
        _vae = new InferenceSession(Path.Combine(dir, "vae_decoder", "model.onnx"), so);
        int scale = 8;
        _latent = size / scale;
    }

    /// <summary>Text encoder once ([2B, 77]), UNet <paramref name="steps"/>× ([2B, 4, h, w]), VAE decoder once ([B, 4, h, w]); ms each.</summary>
    public (double Text, double UNet, double Vae) Run(int batch, int steps)
    {
        int rows = 2 * batch, h = _latent;
        using var ro = new RunOptions();
        var idsMeta = _text.InputMetadata.First();
        int length = idsMeta.Value.Dimensions[1] > 0 ? idsMeta.Value.Dimensions[1] : 77;
        using var ids = idsMeta.Value.ElementDataType == TensorElementType.Int64
            ? OrtValue.CreateTensorValueFromMemory(Enumerable.Range(0, rows * length).Select(i => (long)(i % length % 100)).ToArray(), [rows, length])
            : OrtValue.CreateTensorValueFromMemory(Enumerable.Range(0, rows * length).Select(i => i % length % 100).ToArray(), [rows, length]);
        var sampleData = Noise(rows * 4 * h * h);
        using var sample = OrtValue.CreateTensorValueFromMemory(sampleData, [rows, 4, h, h]);
        var latents = Noise(batch * 4 * h * h);
        using var latentValue = OrtValue.CreateTensorValueFromMemory(latents, [batch, 4, h, h]);

        var sw = Stopwatch.StartNew();
        using var textOut = _text.Run(ro, [idsMeta.Key], [ids], ["last_hidden_state"]);
        double text = sw.Elapsed.TotalMilliseconds;
        double unet = 0;
        for (int s = 0; s < steps; s++)
        {
            using var timestep = Timestep(999.0 - s * 999.0 / steps, rows);
            sw.Restart();
            using var o = _unet.Run(ro, ["sample", "timestep", "encoder_hidden_states"], [sample, timestep, textOut[0]], ["out_sample"]);
            unet += sw.Elapsed.TotalMilliseconds;
        }
        sw.Restart();
        using var image = _vae.Run(ro, [_vae.InputMetadata.Keys.First()], [latentValue], [_vae.OutputMetadata.Keys.First()]);
        double vae = sw.Elapsed.TotalMilliseconds;
        return (text, unet, vae);
    }

    private OrtValue Timestep(double t, int rows)
    {
        var meta = _unet.InputMetadata["timestep"];
        long[] shape = meta.Dimensions.Length == 0 ? [] : [meta.Dimensions[0] > 0 ? meta.Dimensions[0] : 1];
        int n = shape.Length == 0 ? 1 : (int)shape[0];
        return meta.ElementDataType switch
        {
            TensorElementType.Int64 => OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat((long)t, n).ToArray(), shape),
            TensorElementType.Double => OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(t, n).ToArray(), shape),
            TensorElementType.Float16 => OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat((Float16)(float)t, n).ToArray(), shape),
            _ => OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat((float)t, n).ToArray(), shape),
        };
    }

    private float[] Noise(int n)
    {
        var data = new float[n];
        for (int i = 0; i < n; i++) data[i] = (float)(_random.NextDouble() * 2 - 1);
        return data;
    }

    public void Dispose()
    {
        _text.Dispose();
        _unet.Dispose();
        _vae.Dispose();
    }
}

/// <summary>The library's PNG encoder (and its internal variants) vs StbImageWriteSharp (the previous encoder) and SkiaSharp (libpng, which the farm uses to decode) on the same pixels.</summary>
internal static class PngBench
{
    public static double TimeEncode(byte[] png, int repeats)
    {
        var result = RenderFarm.Imaging.ImageDecoder.Decode(png, grey: false, long.MaxValue, nameof(png));
        RenderFarm.Diffusion.Imaging.PngEncoder.Encode(result.Pixels, result.Width, result.Height, [new("parameters", "x")]);
        var times = new List<double>();
        for (int i = 0; i < repeats; i++)
        {
            var sw = Stopwatch.StartNew();
            RenderFarm.Diffusion.Imaging.PngEncoder.Encode(result.Pixels, result.Width, result.Height, [new("parameters", "x")]);
            times.Add(sw.Elapsed.TotalMilliseconds);
        }
        return Bench.Median(times);
    }

    /// <summary>Skia's PNG encoder on the same RGB pixels (expanded to RGBX, Skia's nearest layout, outside the timing).</summary>
    private static readonly Dictionary<int, SkiaSharp.SKBitmap> SkiaInputs = [];

    private static byte[] SkiaPng(byte[] rgb, int size)
    {
        if (!SkiaInputs.TryGetValue(size, out var bitmap))
        {
            bitmap = new SkiaSharp.SKBitmap(new SkiaSharp.SKImageInfo(size, size, SkiaSharp.SKColorType.Rgb888x, SkiaSharp.SKAlphaType.Opaque));
            var pixels = bitmap.GetPixelSpan();
            for (int p = 0; p < size * size; p++)
            {
                pixels[p * 4] = rgb[p * 3];
                pixels[p * 4 + 1] = rgb[p * 3 + 1];
                pixels[p * 4 + 2] = rgb[p * 3 + 2];
                pixels[p * 4 + 3] = 255;
            }
            SkiaInputs[size] = bitmap;
        }
        using var data = bitmap.PeekPixels().Encode(SkiaSharp.SKEncodedImageFormat.Png, 100)!;
        return data.ToArray();
    }

    public static void Run(int[] sizes, int iterations)
    {
        Console.WriteLine("image: smooth gradients + sinusoids + ±4 noise (a stand-in for a rendered image; pure noise does not compress)");
        Console.WriteLine("| size | encoder | median ms | min ms | bytes |");
        Console.WriteLine("|--:|---|--:|--:|--:|");
        foreach (int size in sizes)
        {
            var rgb = Image(size);
            Measure(size, "StbImageWriteSharp (previous)", () =>
            {
                using var stream = new MemoryStream();
                new StbImageWriteSharp.ImageWriter().WritePng(rgb, size, size, StbImageWriteSharp.ColorComponents.RedGreenBlue, stream);
                return stream.ToArray();
            }, iterations);
            Measure(size, "SkiaSharp (libpng, default settings)", () => SkiaPng(rgb, size), iterations);
            Measure(size, "PngEncoder.Encode (default: Sub, level 3, filtered)", () => RenderFarm.Diffusion.Imaging.PngEncoder.Encode(rgb, size, size), iterations);
            foreach (var (filter, level, strategy) in new (Filter, int, System.IO.Compression.ZLibCompressionStrategy)[]
            {
                (Filter.Adaptive, 1, Strategy.Filtered), (Filter.Adaptive, 2, Strategy.Filtered), (Filter.Adaptive, 3, Strategy.Default),
                (Filter.Adaptive, 6, Strategy.Filtered), (Filter.Sub, 1, Strategy.Filtered), (Filter.Sub, 2, Strategy.Filtered), (Filter.Sub, 4, Strategy.Filtered), (Filter.Sub, 6, Strategy.Filtered),
                (Filter.Paeth, 3, Strategy.Filtered), (Filter.Up, 3, Strategy.Filtered), (Filter.Sub, 3, Strategy.Filtered), (Filter.None, 3, Strategy.Filtered),
                (Filter.Paeth, 1, Strategy.Filtered), (Filter.Up, 1, Strategy.Filtered),
            })
            {
                Measure(size, $"  {filter}, level {level}, {strategy}", () => RenderFarm.Diffusion.Imaging.PngEncoder.Encode(rgb, size, size, null, filter, level, strategy), iterations);
            }
        }
        Batch(size: sizes.Max(), batch: 4, iterations);
        Crc(RenderFarm.Diffusion.Imaging.PngEncoder.Encode(Image(sizes.Max()), sizes.Max(), sizes.Max()), iterations);
    }

    /// <summary>CRC-32 over a PNG's bytes: the byte-at-a-time table the encoder used before vs System.IO.Hashing's.</summary>
    private static void Crc(byte[] data, int iterations)
    {
        var table = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            uint c = n;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[n] = c;
        }
        uint TableCrc()
        {
            uint c = ~0u;
            foreach (var b in data) c = table[(c ^ b) & 0xff] ^ (c >> 8);
            return ~c;
        }
        var tableTimes = new List<double>();
        var libraryTimes = new List<double>();
        for (int i = 0; i < Math.Max(iterations, 9); i++)
        {
            var sw = Stopwatch.StartNew();
            uint a = TableCrc();
            tableTimes.Add(sw.Elapsed.TotalMilliseconds);
            sw.Restart();
            uint b = System.IO.Hashing.Crc32.HashToUInt32(data);
            libraryTimes.Add(sw.Elapsed.TotalMilliseconds);
            if (a != b) throw new InvalidOperationException("CRC mismatch");
        }
        Console.WriteLine($"CRC-32 of a {data.Length:N0}-byte PNG: byte-at-a-time table (previous) median {Bench.Median(tableTimes):F3} ms, " +
            $"System.IO.Hashing median {Bench.Median(libraryTimes):F3} ms");
    }

    /// <summary>A batch's PNGs one after another vs in parallel, as the pipeline encodes a batch (one image per core).</summary>
    private static void Batch(int size, int batch, int iterations)
    {
        var images = Enumerable.Range(0, batch).Select(_ => Image(size)).ToArray();
        var serial = new List<double>();
        var parallel = new List<double>();
        for (int i = 0; i < Math.Max(iterations, 9); i++)
        {
            var sw = Stopwatch.StartNew();
            foreach (var rgb in images) RenderFarm.Diffusion.Imaging.PngEncoder.Encode(rgb, size, size);
            serial.Add(sw.Elapsed.TotalMilliseconds);
            sw.Restart();
            Parallel.For(0, batch, b => RenderFarm.Diffusion.Imaging.PngEncoder.Encode(images[b], size, size));
            parallel.Add(sw.Elapsed.TotalMilliseconds);
        }
        Console.WriteLine($"batch of {batch} at {size}²: one after another median {Bench.Median(serial):F1} ms (min {serial.Min():F1}), " +
            $"in parallel median {Bench.Median(parallel):F1} ms (min {parallel.Min():F1}) on {Environment.ProcessorCount} cores");
    }

    private static void Measure(int size, string name, Func<byte[]> encode, int iterations)
    {
        byte[] png = encode();
        var times = new List<double>();
        for (int i = 0; i < iterations; i++)
        {
            var sw = Stopwatch.StartNew();
            png = encode();
            times.Add(sw.Elapsed.TotalMilliseconds);
        }
        Console.WriteLine($"| {size}² | {name} | {Bench.Median(times):F2} | {times.Min():F2} | {png.Length:N0} |");
    }

    internal static byte[] Image(int size)
    {
        var rgb = new byte[size * size * 3];
        var random = new Random(1);
        for (int y = 0; y < size; y++)
        for (int x = 0; x < size; x++)
        for (int c = 0; c < 3; c++)
        {
            double u = (double)x / size, v = (double)y / size;
            double value = 128 + 60 * Math.Sin(6 * u + 2 * c) * Math.Cos(4 * v) + 40 * (u - v) + random.Next(-4, 5);
            rgb[(y * size + x) * 3 + c] = (byte)Math.Clamp(value, 0, 255);
        }
        return rgb;
    }
}

internal static class Bench
{
    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.OrderBy(v => v).ToArray();
        return sorted.Length == 0 ? double.NaN
            : sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    public static string Ms(double ms) => ms >= 10_000 ? $"{ms / 1000:F1} s" : ms >= 100 ? $"{ms:F0} ms" : $"{ms:F2} ms";

    public static string Mib(long bytes) => bytes >= 1L << 30 ? $"{bytes / (double)(1L << 30):F2} GiB" : $"{bytes / (double)(1L << 20):F1} MiB";

    /// <summary>VmRSS and VmHWM (peak) of this process, bytes.</summary>
    public static (long Rss, long Peak) Rss()
    {
        long rss = 0, hwm = 0;
        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("VmRSS:")) rss = Kib(line);
            else if (line.StartsWith("VmHWM:")) hwm = Kib(line);
        }
        return (rss, hwm);

        static long Kib(string line) => long.Parse(line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
    }

    public static string Status(string field) =>
        Mib(File.ReadLines("/proc/self/status").Where(l => l.StartsWith(field + ":")).Select(l => long.Parse(l.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1]) * 1024).FirstOrDefault());

    public static string LoadAverage() =>
        File.Exists("/proc/loadavg") ? string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";

    /// <summary>Bytes on disk per component folder that holds a model.onnx (model.onnx + external data).</summary>
    public static Dictionary<string, long> ComponentBytes(string dir) =>
        Directory.GetDirectories(dir)
            .Where(d => File.Exists(Path.Combine(d, "model.onnx")))
            .OrderBy(d => d, StringComparer.Ordinal)
            .ToDictionary(d => Path.GetFileName(d), d => Directory.GetFiles(d, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length));
}

internal sealed record Options(string Preset, string Directory, int[] Batches, int Steps, int Size, int Iterations, string Scheduler, bool Write, bool Arena, bool PipelineOnly)
{
    public static Options Parse(string[] args)
    {
        string preset = args.FirstOrDefault(a => !a.StartsWith("--")) ?? "tiny";
        string Get(string name, string fallback)
        {
            int i = Array.IndexOf(args, "--" + name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        }
        bool sd15 = preset == "sd15";
        return new Options(
            preset,
            Get("dir", sd15 ? "/tmp/sd15" : $"/tmp/pipelinebench-{preset}"),
            Get("batch", sd15 ? "1" : "1,4").Split(',').Select(int.Parse).ToArray(),
            int.Parse(Get("steps", sd15 ? "2" : "20")),
            int.Parse(Get("size", sd15 ? "512" : "64")),
            int.Parse(Get("iterations", sd15 ? "2" : preset == "png" ? "9" : "15")),
            Get("scheduler", "euler"),
            args.Contains("--write"),
            Get("arena", "off") == "on",
            args.Contains("--pipeline-only"));
    }
}

/// <summary>Minor page faults (whole process) and managed bytes allocated (all threads) per batch size.</summary>
internal sealed class Cost
{
    private readonly Dictionary<int, (long Faults, long Bytes, int Count)> _totals = [];

    public static (long Faults, long Bytes) Now() => (MinorFaults(), GC.GetTotalAllocatedBytes(precise: true));

    public void Add(int batch, (long Faults, long Bytes) start)
    {
        var (faults, bytes) = Now();
        var total = _totals.GetValueOrDefault(batch);
        _totals[batch] = (total.Faults + faults - start.Faults, total.Bytes + bytes - start.Bytes, total.Count + 1);
    }

    public string Describe(int batch) => _totals.TryGetValue(batch, out var t) && t.Count > 0
        ? $"{(double)t.Faults / t.Count:F1} faults, {t.Bytes / 1024.0 / t.Count:F1} KiB"
        : "n/a";

    // Field 10 of /proc/self/stat (minflt); the name in field 2 may hold spaces, so count from its closing ") ".
    private static long MinorFaults() =>
        long.Parse(File.ReadAllText("/proc/self/stat").Split(") ")[1].Split(' ')[7], CultureInfo.InvariantCulture);
}
