// The farm-overhead benchmark's baseline (bench/farm-overhead.md): renders the images the farm would, in the same
// batches, with the renderer a worker would load for the model entry (a model directory, or synthetic:MS[:textured]),
// and writes the PNGs to a folder, all in this one process. Like the worker, a batch's PNGs are encoded while the
// device renders the next batch. Prints one JSON line: wall seconds (first batch to last file written, after a
// warm-up render), device seconds (the renderer's device part, summed) and images.
//
//   OverheadBench --model DIR|synthetic:20:textured --images 48 --batch 8 --steps 8 --size 64x64 --out DIR
using System.Diagnostics;
using System.Globalization;
using RenderFarm.Diffusion;
using RenderFarm.Worker;

var options = args.Select((a, i) => (a, i)).Where(p => p.a.StartsWith("--", StringComparison.Ordinal))
    .ToDictionary(p => p.a[2..], p => args[p.i + 1]);
string Get(string key) => options.TryGetValue(key, out var v) ? v : throw new ArgumentException($"--{key} is required");
var spec = Get("model");
int images = int.Parse(Get("images"), CultureInfo.InvariantCulture), batch = int.Parse(Get("batch"), CultureInfo.InvariantCulture);
int steps = int.Parse(Get("steps"), CultureInfo.InvariantCulture);
var size = Get("size").Split('x').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
var output = Directory.CreateDirectory(Get("out")).FullName;

using IShardRenderer renderer = SyntheticRenderer.TryParse(spec, out var synthetic)
    ? synthetic!
    : new PipelineRenderer(StableDiffusionPipeline.Load(spec, new WorkerOptions().ToDiffusionOptions()));
var progress = new Progress<StepProgress>(_ => { });
GenerationRequest Request(int first, int count) => new(
    Enumerable.Range(first, count).Select(i => new ImagePrompt($"bench prompt {i + 1}", "", 1)).ToList(),
    size[0], size[1], steps, 7.5f, "euler", "bench");

await renderer.RenderAsync(Request(0, Math.Min(batch, images)), progress, CancellationToken.None); // warm-up (JIT, ORT)

var device = TimeSpan.Zero;
var writes = new List<Task>();
var wall = Stopwatch.StartNew();
for (var first = 0; first < images; first += batch)
{
    var started = Stopwatch.GetTimestamp();
    var rendered = await renderer.RenderOnDeviceAsync(Request(first, Math.Min(batch, images - first)), progress, CancellationToken.None);
    device += Stopwatch.GetElapsedTime(started);
    var index = first;
    writes.Add(Task.Run(async () =>
    {
        var pngs = rendered.EncodePngs();
        for (var i = 0; i < pngs.Count; i++)
            await File.WriteAllBytesAsync(Path.Combine(output, $"{index + i:D6}.png"), pngs[i].Png);
    }));
}
await Task.WhenAll(writes);
wall.Stop();
Console.WriteLine(FormattableString.Invariant(
    $"{{\"wall_s\": {wall.Elapsed.TotalSeconds:F4}, \"device_s\": {device.TotalSeconds:F4}, \"images\": {images}}}"));
