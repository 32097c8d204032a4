// GPU benchmark of the C# pipeline (bench/gpu.md). Every section runs in its own try/catch under a time budget, so a
// failure is reported and the rest still measures; everything goes to stdout and, as JSON, to --json.
//   GpuBench [--preset sd15-fp16] [--dir DIR] [--ep cuda|cpu] [--device 0] [--size 512] [--steps 30] [--batches 1,4,8]
//            [--reps 3] [--fp32-preset sd15|none] [--cast-controlnet sd15] [--json FILE]
//            [--sections default,graph,hoststep,cpureference,controlnet,bare,schedulers,requests,controlnetcast,fixedbatch,lora,batching,determinism,fp32]
using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.OnnxRuntime;
using RenderFarm.Diffusion;
using RenderFarm.GpuBench;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
var o = BenchOptions.Parse(args);
var report = new Report(o.JsonPath);
report.Line($"# GpuBench {string.Join(' ', args)}; .NET {Environment.Version}, {Environment.ProcessorCount} cores, {DateTime.UtcNow:yyyy-MM-dd HH:mm:ss} UTC");
report.Line($"ORT {OrtEnv.Instance().GetVersionString()}; providers: {string.Join(", ", OrtEnv.Instance().GetAvailableProviders())}");
report.Line(Gpu.Describe());
report.Set("gpu", Gpu.Describe());

var bench = new Measurements(o, report);
await report.Section("write model", () => bench.EnsureModel(o.Preset, o.Directory));

// StepOnDevice set, not left to the provider: on the CPU check below it runs the same step graph as on the GPU.
var baseline = new DiffusionOptions { ExecutionProvider = o.Provider, DeviceId = o.Device, Batching = ModelBatching.Batch, StepOnDevice = true };
// The sections after "graph" run with the CUDA graph when it ran (a GPU, the section asked for) and worked.
bool graph = o.Provider != "cpu" && o.Runs("graph");
DiffusionOptions Measured() => baseline with { Cuda = new CudaOptions { CudaGraph = graph } };
Dictionary<int, IReadOnlyList<GeneratedImage>>? defaultImages = null, graphImages = null;
// The dynamic-batch images with the step on the device, as the sections after "graph" render them.
Dictionary<int, IReadOnlyList<GeneratedImage>>? StepOnDeviceImages() => graph ? graphImages : defaultImages;
if (o.Runs("default")) await report.Section("pipeline: cuDNN EXHAUSTIVE, one run per request (Batch)", async () =>
    defaultImages = await bench.MeasureAsync("default", o.Directory, baseline, o.Batches, o.Reps));
if (graph && !await report.Section("pipeline: + CUDA graph", async () =>
    {
        var images = graphImages = await bench.MeasureAsync("cuda_graph", o.Directory, Measured(), o.Batches, o.Reps);
        if (defaultImages is not null) bench.Compare("cuda_graph vs default", defaultImages, images);
    }))
{
    // Every section after would fail the same way, and device time is scarce: find out whether the CUDA graph or the
    // step on the device is to blame (one short request without the graph), and measure the rest without it.
    graph = false;
    if (defaultImages is null && !await report.Section("pipeline: the step on the device without the CUDA graph (after the failure above)", async () =>
            defaultImages = await bench.MeasureAsync("default", o.Directory, baseline, [o.Batches[0]], 1)))
    {
        baseline = baseline with { StepOnDevice = false };
        report.Line("the pipeline failed without the CUDA graph too: every section below runs with the step on the host (Farm:StepOnDevice=false), in case the step is to blame");
    }
    else
    {
        report.Line("the CUDA graph failed with the step on the device: every section below runs without the graph");
    }
}
if (o.Runs("hoststep"))
{
    // The configuration before the step moved to the device: guidance and the scheduler step on the host, the latents
    // copied down and up every step (with the CUDA graph where the default above ran without, to compare with "graph").
    await report.Section("pipeline: scheduler step on the host" + (graph ? ", CUDA graph" : ""), async () =>
    {
        var images = await bench.MeasureAsync("host_step", o.Directory, Measured() with { StepOnDevice = false }, o.Batches, o.Reps);
        if (StepOnDeviceImages() is { } onDevice) bench.Compare("host step vs step on the device", onDevice, images);
    });
}
// Tiny models on this device against the CPU provider: seconds, and the one check of what every device path shares.
if (o.Runs("cpureference")) await report.Section("tiny models: this device against the CPU provider", () => bench.CompareWithCpuAsync(o.Directory, Measured()));
Dictionary<int, IReadOnlyList<GeneratedImage>>? inPlace = null;
if (o.Runs("controlnet"))
{
    // Residuals summed on the device (the default there) against read back and summed on the host, images compared.
    var control = Measured();
    await report.Section("pipeline: one ControlNet, residuals on the device", async () =>
        inPlace = await bench.MeasureControlNetAsync("controlnet", o.Directory, control, o.Batches, o.Reps));
    await report.Section("pipeline: one ControlNet, residuals through the host", async () =>
    {
        var images = await bench.MeasureControlNetAsync("controlnet_host", o.Directory, control with { StepOnDevice = false }, o.Batches, o.Reps);
        if (inPlace is not null) bench.Compare("controlnet: host vs device", inPlace, images);
    });
}
if (o.Runs("bare")) await report.Section("bare sessions (same options, UNet on fixed device buffers)", () => bench.MeasureBare("bare", o.Directory, baseline));
if (graph && o.Runs("bare"))
{
    await report.Section("bare sessions, CUDA graph", () => bench.MeasureBare("bare_graph", o.Directory, Measured()));
}
// After the bare sessions, which the overhead ratios need: should the time budget run out, this is what goes.
if (o.Runs("schedulers")) await report.Section("schedulers: the step on the device against the host", () => bench.CompareSchedulersAsync(o.Directory, baseline));
if (o.Runs("requests")) await report.Section("img2img, inpainting, previews, hires fix: the step on the device against the host", () => bench.CompareImageRequestsAsync(o.Directory, baseline));
if (o.Runs("controlnetcast"))
{
    // A ControlNet of the other element type beside the UNet (--cast-controlnet; a float32 one beside a float16 UNet by
    // default): the UNet's input is cast for it on the device each step it steers.
    var controlNetPreset = o.CastControlNetPreset;
    var control = Measured();
    await report.Section($"pipeline: one {controlNetPreset} ControlNet (another element type), residuals on the device", async () =>
    {
        var images = await bench.MeasureControlNetAsync("controlnet_cast", o.Directory, control, o.Batches, o.Reps, controlNetPreset);
        // The same weights before rounding to float16: the images differ by rounding only, unless the cast goes wrong.
        if (inPlace is not null) bench.Compare($"controlnet: {controlNetPreset} vs {o.Preset} ControlNet", inPlace, images);
        Directory.Delete(o.Directory + "-controlnets/canny-" + controlNetPreset, recursive: true); // its disk back
    });
}
if (o.Runs("fixedbatch"))
{
    // A UNet exported with a fixed batch of 2 rows (one image with CFG, as a TensorRT export with static shapes takes
    // it): a larger request runs in chunks, each chunk's rows copied device to device through the UNet's bound buffers
    // with the step on the device, or from the host with it there.
    var options = Measured();
    var fixedDirectory = bench.StaticBatchCopy(o.Directory, 2);
    Dictionary<int, IReadOnlyList<GeneratedImage>>? chunked = null;
    await report.Section("pipeline: UNet of 2 fixed rows, the step on the device" + (graph ? ", CUDA graph" : ""), async () =>
    {
        chunked = await bench.MeasureAsync("fixed_batch", fixedDirectory, options, o.Batches, o.Reps);
        if (StepOnDeviceImages() is { } dynamic) bench.Compare("fixed batch vs dynamic batch", dynamic, chunked);
    });
    await report.Section("pipeline: UNet of 2 fixed rows, the step on the host" + (graph ? ", CUDA graph" : ""), async () =>
    {
        var images = await bench.MeasureAsync("fixed_batch_host", fixedDirectory, options with { StepOnDevice = false }, o.Batches, o.Reps);
        if (chunked is not null) bench.Compare("fixed batch: host step vs step on the device", chunked, images);
    });
}
if (o.Runs("lora"))
{
    var options = Measured();
    await report.Section("pipeline: a LoRA through weight overrides, against its weights merged into the files", () => bench.MeasureLoraAsync(o.Directory, options));
}
if (o.Runs("batching")) await report.Section("batching: Image vs Batch", () => bench.CompareBatchingAsync(o.Directory, baseline));
if (o.Runs("determinism")) await report.Section("determinism across fresh sessions", () => bench.DeterminismAsync(o.Directory, baseline));
if (o.Fp32Preset is { } fp32 && o.Runs("fp32"))
{
    var fp32Directory = o.Directory + "-" + fp32;
    await report.Section($"{fp32} (float32) for comparison", async () =>
    {
        bench.EnsureModel(fp32, fp32Directory);
        var images = await bench.MeasureAsync("fp32", fp32Directory, baseline, [1], o.Reps);
        if (defaultImages is not null) bench.Compare("fp16 vs fp32 (same weights, rounded)", defaultImages, images);
        Directory.Delete(fp32Directory, recursive: true); // 4 GB of disk back
    });
}
report.Line(Gpu.Describe());
report.Save();
report.Line($"# done in {report.Elapsed.TotalSeconds:F0} s");
