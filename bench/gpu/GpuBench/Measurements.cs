using System.Diagnostics;
using System.Text.Json.Nodes;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using RenderFarm.Diffusion;
using RenderFarm.Diffusion.Imaging;
using RenderFarm.Diffusion.Models;
using RenderFarm.Diffusion.Tensors;
using RenderFarm.Imaging;

namespace RenderFarm.GpuBench;

/// <summary>The benchmark's measurements; each writes its lines and figures to the <see cref="Report"/>.</summary>
internal sealed class Measurements(BenchOptions o, Report report)
{
    /// <summary>Per configuration label: the pipeline's UNet time per call at batch 1 (CFG: 2 rows), for the bare ratio.</summary>
    private readonly Dictionary<string, double> _unetPerCall = [];
    private readonly Dictionary<string, double> _imageMs = [];

    public void EnsureModel(string preset, string directory)
    {
        if (File.Exists(Path.Combine(directory, "unet", "model.onnx")))
        {
            report.Line($"{preset}: using {directory}");
            return;
        }
        var clock = Stopwatch.StartNew();
        RenderFarm.ModelBuilder.ModelPresets.Write(preset, directory);
        report.Line($"{preset}: wrote {directory} in {clock.Elapsed.TotalSeconds:F1} s");
    }

    private GenerationRequest Request(int batch, int variant) => new(
        Enumerable.Range(0, batch).Select(i => new ImagePrompt($"a photograph of an astronaut riding a horse on the moon, variant {variant}.{i}",
            "blurry, lowres", 1000 + 100 * variant + i)).ToArray(),
        o.Size, o.Size, o.Steps, 7.5f, "euler", o.Preset);

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    private static double Ms(TimeSpan t) => t.TotalMilliseconds;

    /// <summary>Each component's runs and run time between two snapshots of the pipeline's statistics.</summary>
    private static (string Component, long Runs, TimeSpan Time)[] Since(IReadOnlyList<ComponentStatistics>? after, IReadOnlyList<ComponentStatistics>? before) =>
        (after ?? []).Select(a => (a, b: before?.FirstOrDefault(b => b.Component == a.Component)))
            .Select(p => (p.a.Component, p.a.Runs - (p.b?.Runs ?? 0), p.a.RunTime - (p.b?.RunTime ?? TimeSpan.Zero)))
            .ToArray();

    /// <summary>Time in the pipeline's own graphs on the device (the scheduler step, ControlNet sums).</summary>
    private static TimeSpan DeviceGraphTime(PipelineStatistics statistics) =>
        (statistics.DeviceGraphs ?? []).Aggregate(TimeSpan.Zero, (sum, g) => sum + g.RunTime);

    /// <summary>
    /// Loads a pipeline with <paramref name="options"/>, then per batch size: a first request (kernel selection at that
    /// shape), <paramref name="reps"/> timed requests one after another, and the same number plus one all submitted at
    /// once (the PNGs of one overlap the next one's model runs). Returns each batch size's first images.
    /// </summary>
    public async Task<Dictionary<int, IReadOnlyList<GeneratedImage>>> MeasureAsync(string label, string directory, DiffusionOptions options, int[] batches, int reps)
    {
        var clock = Stopwatch.StartNew();
        using var pipeline = StableDiffusionPipeline.Load(directory, options);
        double load = clock.Elapsed.TotalSeconds;
        clock.Restart();
        await pipeline.WarmUpAsync();
        report.Line($"{label}: load {load:F2} s, warm-up {clock.Elapsed.TotalSeconds:F2} s; GPU memory used {Gpu.UsedMiB()} MiB");
        var firstImages = new Dictionary<int, IReadOnlyList<GeneratedImage>>();
        var figures = new JsonObject { ["load_s"] = load };
        foreach (int batch in batches)
        {
            clock.Restart();
            firstImages[batch] = await pipeline.GenerateAsync(Request(batch, 0));
            double first = clock.Elapsed.TotalMilliseconds;

            var before = pipeline.Statistics;
            var times = new List<double>();
            for (int r = 1; r <= reps; r++)
            {
                clock.Restart();
                await pipeline.GenerateAsync(Request(batch, r));
                times.Add(clock.Elapsed.TotalMilliseconds);
            }
            var after = pipeline.Statistics;
            var ran = Since(after.Components, before.Components);
            double Per(string component, bool perRun)
            {
                var c = ran.Single(c => c.Component == component);
                return Ms(c.Time) / (perRun ? Math.Max(1, c.Runs) : reps);
            }
            double unetCall = Per("unet", perRun: true);
            // A static-batch UNet runs a request's rows in several calls a step.
            double unetCallsPerStep = (double)ran.Single(c => c.Component == "unet").Runs / (reps * o.Steps);
            double vae = Per("vae_decoder", perRun: false);
            double text = Per("text_encoder", perRun: false);
            double own = Ms(after.OwnWork - before.OwnWork) / reps;
            double held = Ms(after.Generating - before.Generating) / reps;
            double png = Ms(after.Encoding - before.Encoding) / reps;
            // Guidance and the scheduler's step on the device (part of the own work): the step graph's runs.
            double deviceSteps = Ms(DeviceGraphTime(after) - DeviceGraphTime(before)) / reps;
            double request = Median(times);

            // All at once: the gate serialises the model runs, PNG encoding runs beside the next request's.
            var pipelinedBefore = pipeline.Statistics;
            clock.Restart();
            await Task.WhenAll(Enumerable.Range(0, reps + 1).Select(r => pipeline.GenerateAsync(Request(batch, 50 + r))));
            double wall = clock.Elapsed.TotalMilliseconds;
            var pipelinedAfter = pipeline.Statistics;
            double modelTime = pipelinedAfter.Components.Sum(c => Ms(c.RunTime)) - pipelinedBefore.Components.Sum(c => Ms(c.RunTime));
            double pipelinedRate = (reps + 1) * batch * 1000 / wall;

            if (batch == 1)
            {
                _unetPerCall[label] = unetCall;
                _imageMs[label] = request;
            }
            report.Line($"{label} B={batch}: request {request:F1} ms (min {times.Min():F1}; first {first:F0} ms), {batch * 1000 / request:F2} images/s one at a time, " +
                $"{pipelinedRate:F2} images/s {reps + 1} in flight (models busy {100 * modelTime / wall:F1} % of the wall time)");
            report.Line($"{label} B={batch}: UNet {unetCall:F2} ms per call ({2 * batch / unetCallsPerStep:0.#} rows; {unetCallsPerStep:0.#} a step), VAE decode {vae:F1} ms, text encoder {text:F2} ms per request; " +
                $"own work while holding the models {own:F2} ms ({100 * own / held:F2} % of {held:F1} ms; steps on the device {deviceSteps:F2} ms of it); " +
                $"PNG encoding {png:F1} ms after releasing them");
            figures[$"b{batch}"] = new JsonObject
            {
                ["request_ms"] = request, ["first_request_ms"] = first, ["images_per_s"] = batch * 1000 / request,
                ["images_per_s_pipelined"] = pipelinedRate, ["models_busy_pipelined"] = modelTime / wall,
                ["unet_ms_per_call"] = unetCall, ["unet_calls_per_step"] = unetCallsPerStep, ["vae_decode_ms"] = vae, ["text_encoder_ms"] = text,
                ["own_work_ms"] = own, ["own_work_share"] = own / held, ["device_steps_ms"] = deviceSteps, ["png_ms"] = png,
            };
        }
        figures["gpu_memory_used_mib"] = Gpu.UsedMiB();
        report.Line($"{label}: GPU memory used {figures["gpu_memory_used_mib"]} MiB");
        report.Set(label, figures);
        return firstImages;
    }

    /// <summary>
    /// <paramref name="directory"/> as a static-batch export of <paramref name="rows"/> UNet rows (as one exported for
    /// TensorRT with fixed shapes): a sibling folder whose unet/model.onnx is rewritten with that batch and whose every
    /// other file is a symbolic link to the original's, so no weight is copied.
    /// </summary>
    public string StaticBatchCopy(string directory, int rows)
    {
        var copy = $"{directory}-unet-batch{rows}";
        var model = Path.Combine(copy, "unet", "model.onnx");
        if (File.Exists(model))
        {
            return copy;
        }
        Directory.CreateDirectory(Path.Combine(copy, "unet"));
        foreach (var entry in Directory.EnumerateFileSystemEntries(directory).Where(e => Path.GetFileName(e) != "unet"))
        {
            var link = Path.Combine(copy, Path.GetFileName(entry));
            if (Directory.Exists(entry)) Directory.CreateSymbolicLink(link, entry);
            else File.CreateSymbolicLink(link, entry);
        }
        foreach (var file in Directory.EnumerateFiles(Path.Combine(directory, "unet")).Where(f => Path.GetFileName(f) != "model.onnx"))
        {
            File.CreateSymbolicLink(Path.Combine(copy, "unet", Path.GetFileName(file)), file);
        }
        // Written last, under a temporary name: its presence says the copy is whole.
        File.Copy(Path.Combine(directory, "unet", "model.onnx"), model + ".tmp", overwrite: true);
        RenderFarm.ModelBuilder.StaticBatch.Fix(model + ".tmp", rows);
        File.Move(model + ".tmp", model);
        report.Line($"{Path.GetFileName(directory)} with a UNet of {rows} fixed rows: {copy}");
        return copy;
    }

    /// <summary>
    /// A LoRA applied the way a worker applies one, through weight overrides at session creation (on a GPU the merged
    /// weights are copied to device memory once; no GPU had run that before), against a copy of the model with the
    /// same merged weights written into its files: the images must match (the CPU provider's tests hold them
    /// byte-identical). Also what a LoRA costs: the first request with it (merge and sessions), then a request with it
    /// against a plain one. The LoRA (kohya layout, rank 8, float16, UNet and text encoder) and the merged copy are
    /// written beside the preset's folder the first time.
    /// </summary>
    public async Task MeasureLoraAsync(string directory, DiffusionOptions options)
    {
        string library = directory + "-loras", merged = directory + "-lora-merged";
        var set = RenderFarm.GenerationRules.LoraSet.Of(new RenderFarm.GenerationRules.LoraWeight("style", 0.8f));
        var clock = Stopwatch.StartNew();
        if (!File.Exists(Path.Combine(library, "style.safetensors")))
        {
            Directory.CreateDirectory(library);
            RenderFarm.ModelBuilder.Lora.LoraFileWriter.Write(RenderFarm.ModelBuilder.ModelPresets.Get(o.Preset), Path.Combine(library, "style.safetensors"),
                new RenderFarm.ModelBuilder.Lora.LoraWriteOptions { Rank = 8, Alpha = 4, Seed = 21, Type = RenderFarm.ModelBuilder.Graph.ElementType.Float16 });
        }
        var loras = new RenderFarm.Diffusion.Lora.LoraLibrary(library);
        if (!File.Exists(Path.Combine(merged, "unet", "model.onnx")))
        {
            var locators = new[] { "unet", "text_encoder" }.ToDictionary(c => c,
                c => new RenderFarm.Diffusion.Weights.WeightLocator(RenderFarm.Diffusion.Weights.OnnxGraph.Read(Path.Combine(directory, c, "model.onnx"))));
            var weights = RenderFarm.Diffusion.Lora.LoraMerge.Compute(set, loras.Get, locators, xl: false)
                .ToDictionary(c => c.Key, c => c.Value.ToDictionary(w => w.Initializer.Name));
            // The preset's own seed, as EnsureModel wrote it: only the merged weights differ.
            RenderFarm.ModelBuilder.ModelPresets.Write(o.Preset, merged, new RenderFarm.ModelBuilder.ModelWriteOptions
            {
                Force = true,
                ReplaceWeights = (component, initializer) => weights.GetValueOrDefault(component)?.GetValueOrDefault(initializer.Name)?.ToArray(),
            });
        }
        report.Line($"lora: the LoRA and the merged model ready in {clock.Elapsed.TotalSeconds:F1} s");

        using var pipeline = StableDiffusionPipeline.Load(directory, options, new ModelExtensions { Loras = loras });
        using var reference = StableDiffusionPipeline.Load(merged, options);
        await pipeline.WarmUpAsync();
        await reference.WarmUpAsync();
        var request = Request(1, 3);
        clock.Restart();
        var first = await pipeline.GenerateAsync(request with { Loras = set }); // merges the LoRA, makes its sessions
        double firstMs = clock.Elapsed.TotalMilliseconds;
        var plain = new List<double>();
        var withLora = new List<double>();
        IReadOnlyList<GeneratedImage>? plainImages = null;
        for (int r = 0; r < o.Reps; r++)
        {
            clock.Restart();
            plainImages = await pipeline.GenerateAsync(request);
            plain.Add(clock.Elapsed.TotalMilliseconds);
            clock.Restart();
            await pipeline.GenerateAsync(request with { Loras = set });
            withLora.Add(clock.Elapsed.TotalMilliseconds);
        }
        var expected = await reference.GenerateAsync(request);
        var variant = pipeline.Variants.Single(v => v.Loras.Equals(set));
        report.Line($"lora: first request with it {firstMs:F0} ms (merge and sessions); then {Median(withLora):F1} ms per request with it, " +
            $"{Median(plain):F1} ms without; overrides {variant.OverrideBytes / 1048576.0:F1} MiB in {string.Join(", ", variant.Components)}; GPU memory used {Gpu.UsedMiB()} MiB");
        Compare("lora: overrides vs merged weights written in", 1, expected, first);
        if (plainImages is not null)
        {
            Compare("lora: plain vs with the LoRA (must differ)", 1, plainImages, first);
        }
        report.Set("lora", new JsonObject
        {
            ["first_request_ms"] = firstMs, ["request_ms"] = Median(withLora), ["plain_request_ms"] = Median(plain),
            ["override_bytes"] = variant.OverrideBytes, ["gpu_memory_used_mib"] = Gpu.UsedMiB(),
        });
    }

    /// <summary>
    /// The request kinds that start from an image or bring latents back mid-run, each at B = 2 with the step on the
    /// device and on the host (one pipeline each way), images compared: img2img (the VAE encoder, a later first step),
    /// inpainting with the ordinary UNet (the step blends the noised init latents in), live previews every 5 steps (the
    /// latents copied down mid-run) and hires fix (a second pass at 1.5× the size, another UNet shape). A way in which
    /// the device step goes wrong on this GPU shows as more than float rounding.
    /// </summary>
    public async Task CompareImageRequestsAsync(string directory, DiffusionOptions baseline)
    {
        int steps = Math.Min(o.Steps, 20);
        var (init, maskPng) = InitAndMask(o.Size);
        await CompareStepPlacesAsync(directory, baseline,
        [
            ("request img2img", Request(2, 13) with { Steps = steps, InitImage = init, Strength = 0.6f }),
            ("request inpaint", Request(2, 14) with { Steps = steps, InitImage = init, MaskImage = maskPng, Strength = 1f }),
            ("request previews", Request(2, 15) with { Steps = steps, Previews = true, PreviewEvery = 5 }),
            ("request hires", Request(2, 16) with { Steps = steps, Hires = new HiresFix(1.5f, 0.5f) }),
        ]);
    }

    /// <summary>An init image (a colour gradient) and an inpainting mask (repaint the left half), <paramref name="size"/>² PNGs.</summary>
    private static (byte[] Init, byte[] Mask) InitAndMask(int size)
    {
        var gradient = new byte[size * size * 3];
        var mask = new byte[size * size * 3];
        for (int i = 0; i < gradient.Length; i++)
        {
            int x = i / 3 % size, y = i / 3 / size;
            gradient[i] = (byte)((i % 3 == 0 ? x : i % 3 == 1 ? y : x + y) * 255 / (2 * size));
            mask[i] = (byte)(x < size / 2 ? 255 : 0);
        }
        return (PngEncoder.Encode(gradient, size, size), PngEncoder.Encode(mask, size, size));
    }

    /// <summary>Tiny presets the CPU reference renders: float32, float16, fused attention, an int64 timestep.</summary>
    public static readonly string[] CpuReferencePresets = ["tiny", "tiny-fp16", "tiny-mha", "tiny-int64-timestep"];

    /// <summary>
    /// The same requests on this device and on the CPU provider, for tiny models written beside the preset's (an SD 1.5
    /// UNet would take minutes a request on the CPU). Every other section compares the device with itself: a fault both
    /// of its paths share, such as a per-step input that ONNX Runtime copied once when it was bound (an input it places
    /// on the CPU), or a float16 cast done wrong, shows only against the CPU provider, which the test suites hold to the
    /// host step and to diffusers. Each request with the step on the device and on the host, against the CPU's host
    /// step; for scale, the CPU's image against its own with another seed (an unrelated image of the same prompt).
    /// </summary>
    public async Task CompareWithCpuAsync(string directory, DiffusionOptions device)
    {
        const int size = 64;
        var (init, _) = InitAndMask(size);
        GenerationRequest Tiny(string scheduler, int seed) => new(
            [new ImagePrompt("a photograph of an astronaut riding a horse", "blurry", seed), new ImagePrompt("a lighthouse at dusk", "", seed + 1)],
            size, size, 8, 7.5f, scheduler);
        var requests = new (string Name, GenerationRequest Request)[]
        {
            ("euler", Tiny("euler", 21)),
            ("euler_a img2img", Tiny("euler_a", 23) with { InitImage = init, Strength = 0.7f }),
        };
        foreach (var preset in CpuReferencePresets)
        {
            var tinyDirectory = directory + "-" + preset;
            EnsureModel(preset, tinyDirectory);
            async Task<IReadOnlyList<GeneratedImage>[]> Render(DiffusionOptions options, int seedOffset = 0)
            {
                using var pipeline = StableDiffusionPipeline.Load(tinyDirectory, options);
                var images = new IReadOnlyList<GeneratedImage>[requests.Length];
                for (int r = 0; r < requests.Length; r++)
                {
                    var request = requests[r].Request;
                    images[r] = await pipeline.GenerateAsync(request with { Images = request.Images.Select(i => i with { Seed = i.Seed + seedOffset }).ToArray() });
                }
                return images;
            }
            ProbeUNetTimestep(preset, tinyDirectory, device);
            var hostCpu = new DiffusionOptions { ExecutionProvider = "cpu", StepOnDevice = false };
            var cpu = await Render(hostCpu);
            var otherSeed = await Render(hostCpu, seedOffset: 100);
            // The step on the device only where it worked in the sections before (they may have fallen back to the host).
            var onDevice = device.StepOnDevice == true ? await Render(device) : null;
            var hostStep = await Render(device with { StepOnDevice = false });
            for (int r = 0; r < requests.Length; r++)
            {
                var (_, hostMax, hostMean) = Difference(hostStep[r], cpu[r]);
                var (_, _, unrelated) = Difference(otherSeed[r], cpu[r]);
                string name = $"cpu reference {preset} {requests[r].Name}";
                var json = new JsonObject { ["host_step_max_levels"] = hostMax, ["host_step_mean_levels"] = hostMean, ["other_seed_mean_levels"] = unrelated };
                string deviceText = "step on the device not run";
                if (onDevice is not null)
                {
                    var (_, deviceMax, deviceMean) = Difference(onDevice[r], cpu[r]);
                    deviceText = $"step on the device max {deviceMax} mean {deviceMean:F3} levels";
                    json["device_step_max_levels"] = deviceMax;
                    json["device_step_mean_levels"] = deviceMean;
                }
                report.Line($"{name} B=2: against the CPU, {deviceText}, host step max {hostMax} mean {hostMean:F3}; another seed on the CPU, for scale: mean {unrelated:F3}");
                report.Set(name, json);
            }
        }
    }

    /// <summary>
    /// The UNet alone, bound as the pipeline binds it (<see cref="UNetRun"/>), on this device and on the CPU, at timesteps
    /// 999 and 500 in turn, six runs (a CUDA graph is captured after the first ones and replayed after): its last two
    /// outputs against the CPU's, relative to how far the CPU's two outputs are apart. Both step paths bind the UNet's
    /// timestep to one device buffer, so a timestep the device stopped reading (ONNX Runtime copies a bound input once,
    /// when bound, to where it placed its first reader) would show only here: the 500 output then equals the 999 one
    /// and its error is about 1 on this scale; a rendered tiny image barely moves (3 levels at most).
    /// </summary>
    private void ProbeUNetTimestep(string preset, string directory, DiffusionOptions device)
    {
        double[] timesteps = [999, 500, 999, 500, 999, 500];
        var random = new Random(5);
        float[] Randoms(long count) => Enumerable.Range(0, checked((int)count)).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        float[]? sample = null, hidden = null;
        List<float[]> Outputs(DiffusionOptions options)
        {
            using var component = OnnxComponent.Open(directory, "unet", options);
            using var unet = new UNet(component, UNetPlacement.For(options, "unet"));
            const int rows = 2, latent = 8;
            int channels = unet.InChannels ?? 4, width = unet.HiddenSize ?? 32;
            sample ??= Randoms((long)rows * channels * latent * latent);
            hidden ??= Randoms((long)rows * 77 * width);
            var run = unet.Prepare(rows, channels, latent, latent, [new UNetCondition(unet.HiddenName, hidden, [77, width])]);
            using var runOptions = new RunOptions();
            return timesteps.Select(t =>
            {
                var output = new float[rows * run.OutputPerRow];
                run.Run(sample, t, output, runOptions);
                return output;
            }).ToList();
        }
        static double Relative(float[] a, float[] b) =>
            Math.Sqrt(a.Zip(b, (x, y) => (double)(x - y) * (x - y)).Sum() / Math.Max(1e-30, b.Sum(y => (double)y * y)));
        var cpu = Outputs(new DiffusionOptions { ExecutionProvider = "cpu" });
        var onDevice = Outputs(device);
        double apart = Relative(cpu[^1], cpu[^2]);
        double at999 = Relative(onDevice[^2], cpu[^2]) / apart, at500 = Relative(onDevice[^1], cpu[^1]) / apart;
        bool repeats = onDevice[^2].AsSpan().SequenceEqual(onDevice[0]);
        report.Line($"unet timestep {preset}: this device against the CPU, in units of the CPU's own 999-to-500 change ({apart:E2} relative): " +
            $"t=999 {at999:E2}, t=500 {at500:E2} (about 1 if the device ignored the new timestep); its sixth run equals its first: {repeats}");
        report.Set($"unet timestep {preset}", new JsonObject { ["cpu_999_to_500_relative"] = apart, ["t999_error"] = at999, ["t500_error"] = at500, ["repeats"] = repeats });
    }

    /// <summary>
    /// Each request with the step on the device and on the host (one pipeline each way, warmed up; each request run
    /// once for its kernels, then timed): request time each way, and the images compared. A request that asks for
    /// previews also counts those it got each way.
    /// </summary>
    private async Task CompareStepPlacesAsync(string directory, DiffusionOptions baseline, IReadOnlyList<(string Name, GenerationRequest Request)> requests)
    {
        var images = new Dictionary<(string, bool), IReadOnlyList<GeneratedImage>>();
        var times = new Dictionary<(string, bool), double>();
        var previews = new Dictionary<(string, bool), int>();
        foreach (bool onDevice in new[] { true, false })
        {
            using var pipeline = StableDiffusionPipeline.Load(directory, baseline with { StepOnDevice = onDevice });
            await pipeline.WarmUpAsync();
            foreach (var (name, request) in requests)
            {
                await pipeline.GenerateAsync(request); // kernels for its shapes and its step graph
                int seen = 0;
                var progress = new Progress(p => { if (p.Preview is not null) Interlocked.Increment(ref seen); });
                var clock = Stopwatch.StartNew();
                images[(name, onDevice)] = await pipeline.GenerateAsync(request, request.Previews ? progress : null);
                times[(name, onDevice)] = clock.Elapsed.TotalMilliseconds;
                previews[(name, onDevice)] = seen;
            }
        }
        foreach (var (name, request) in requests)
        {
            var (identical, max, mean) = Difference(images[(name, true)], images[(name, false)]);
            double device = times[(name, true)], host = times[(name, false)];
            report.Line($"{name} B={request.Images.Count}, {request.Steps} steps: step on the device {device:F1} ms, on the host {host:F1} ms per request; " +
                $"{identical}/{request.Images.Count} images byte-identical, pixel difference max {max}, mean {mean:F3} levels" +
                (request.Previews ? $"; previews {previews[(name, true)]} / {previews[(name, false)]}" : ""));
            report.Set(name, new JsonObject
            {
                ["device_request_ms"] = device, ["host_request_ms"] = host, ["identical"] = identical, ["max_levels"] = max, ["mean_levels"] = mean,
            });
        }
    }

    /// <summary>An <see cref="IProgress{T}"/> that calls back on the reporting thread (System.Progress posts to the pool).</summary>
    private sealed class Progress(Action<StepProgress> report) : IProgress<StepProgress>
    {
        public void Report(StepProgress value) => report(value);
    }

    /// <summary>
    /// A request with one ControlNet (the preset's architecture, random weights; a gradient as its control image): the
    /// model directory with the UNet that takes residuals and the ControlNet are written beside the preset's the first
    /// time. Per batch size: request time, each component's time per run, and the pipeline's own work while it holds the
    /// models, where the residuals' way between the ControlNet and the UNet shows (summed on the device, or with
    /// StepOnDevice off read back and summed on the host). Returns each batch size's first images.
    /// </summary>
    /// <param name="controlNetPreset">
    /// The preset whose architecture and element type the ControlNet has (null: the UNet's). One of another element type
    /// (a float32 ControlNet beside a float16 UNet) reads a copy of the UNet's input cast to its type each step.
    /// </param>
    public async Task<Dictionary<int, IReadOnlyList<GeneratedImage>>> MeasureControlNetAsync(string label, string directory, DiffusionOptions options,
        int[] batches, int reps, string? controlNetPreset = null)
    {
        string controlDirectory = directory + "-control", library = directory + "-controlnets";
        string unitModel = controlNetPreset is null ? "canny" : "canny-" + controlNetPreset;
        var preset = RenderFarm.ModelBuilder.ModelPresets.Get(o.Preset);
        var clock = Stopwatch.StartNew();
        if (!File.Exists(Path.Combine(controlDirectory, "controlnet", "model.onnx")))
        {
            RenderFarm.ModelBuilder.ModelDirectoryWriter.Write(preset with { ControlNetUNet = true }, controlDirectory, new RenderFarm.ModelBuilder.ModelWriteOptions());
        }
        if (!File.Exists(Path.Combine(library, unitModel, "model.onnx")))
        {
            RenderFarm.ModelBuilder.ControlNetWriter.Write(RenderFarm.ModelBuilder.ModelPresets.Get(controlNetPreset ?? o.Preset), Path.Combine(library, unitModel), force: true);
        }
        report.Line($"{label}: models ready in {clock.Elapsed.TotalSeconds:F1} s");
        using var pipeline = StableDiffusionPipeline.Load(controlDirectory, options,
            new ModelExtensions { ControlNets = new RenderFarm.Diffusion.ControlNets.ControlNetLibrary(library) });
        var image = new byte[o.Size * o.Size * 3];
        for (int i = 0; i < image.Length; i++) image[i] = (byte)(i / 3 % o.Size * 255 / o.Size);
        var unit = new RenderFarm.Diffusion.ControlNets.ControlNetUnit(unitModel, PngEncoder.Encode(image, o.Size, o.Size), 1f);
        var figures = new JsonObject();
        var firstImages = new Dictionary<int, IReadOnlyList<GeneratedImage>>();
        foreach (int batch in batches)
        {
            firstImages[batch] = await pipeline.GenerateAsync(Request(batch, 0) with { ControlNets = [unit] }); // shapes, kernel choice
            var before = pipeline.Statistics;
            var times = new List<double>();
            for (int r = 1; r <= reps; r++)
            {
                clock.Restart();
                await pipeline.GenerateAsync(Request(batch, r) with { ControlNets = [unit] });
                times.Add(clock.Elapsed.TotalMilliseconds);
            }
            var after = pipeline.Statistics;
            double own = Ms(after.OwnWork - before.OwnWork) / reps;
            double held = Ms(after.Generating - before.Generating) / reps;
            var perRun = Since(after.Components, before.Components).Where(c => c.Runs > 0).ToArray();
            // The pipeline's own graphs on the device: the step, the residuals' sum, the cast for a ControlNet of another type.
            var graphs = Since(after.DeviceGraphs, before.DeviceGraphs).Where(g => g.Runs > 0).ToArray();
            report.Line($"{label} B={batch}: request {Median(times):F1} ms; " +
                string.Join(", ", perRun.Concat(graphs).Select(c => $"{c.Component} {Ms(c.Time) / c.Runs:F2} ms × {c.Runs / reps}")) +
                $"; own work while holding the models {own:F2} ms ({100 * own / held:F2} % of {held:F1} ms)");
            var entry = new JsonObject { ["request_ms"] = Median(times), ["own_work_ms"] = own, ["own_work_share"] = own / held };
            foreach (var c in perRun) entry[$"{c.Component}_ms_per_run"] = Ms(c.Time) / c.Runs;
            figures[$"b{batch}"] = entry;
        }
        report.Set(label, figures);
        return firstImages;
    }

    /// <summary>
    /// The same components opened with the same session options and run bare: the UNet through an IOBinding on fixed
    /// buffers (device buffers on a GPU, as the pipeline binds), 20 timed runs after 5; the VAE decoder and text
    /// encoder through plain Run. Then the pipeline's time against these.
    /// </summary>
    public void MeasureBare(string label, string directory, DiffusionOptions options)
    {
        bool onDevice = options.ExecutionProvider != "cpu";
        string Path(string component) => System.IO.Path.Combine(directory, component, "model.onnx");
        int latent = o.Size / 8, rows = 2;
        var random = new Random(7);
        float[] Randoms(long count) => Enumerable.Range(0, checked((int)count)).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();

        using var unetOptions = ExecutionProviders.CreateSessionOptions(options, "unet");
        using var unet = new InferenceSession(Path("unet"), unetOptions);
        var inputs = unet.InputMetadata;
        var buffers = new List<(string Name, TensorBuffer Host, DeviceTensor? Device)>();
        foreach (var (name, meta) in inputs)
        {
            long[] shape = name switch
            {
                "sample" => [rows, meta.Dimensions[1], latent, latent],
                "timestep" => meta.Dimensions.Length == 0 ? [] : [meta.Dimensions[0] > 0 ? meta.Dimensions[0] : rows],
                _ => meta.Dimensions.Select((d, i) => d > 0 ? (long)d : i == 0 ? rows : 77).ToArray(),
            };
            var host = TensorBuffer.Create(meta.ElementDataType, shape);
            if (name == "timestep") host.Fill(999); else host.Write(Randoms(host.Length));
            var device = onDevice ? new DeviceTensor(host, options.DeviceId, pageLock: name == "sample") : null;
            device?.Upload();
            buffers.Add((name, host, device));
        }
        var outputMeta = unet.OutputMetadata.First();
        var output = TensorBuffer.Create(outputMeta.Value.ElementDataType, rows, outputMeta.Value.Dimensions[1] > 0 ? outputMeta.Value.Dimensions[1] : 4, latent, latent);
        var deviceOutput = onDevice ? new DeviceTensor(output, options.DeviceId, pageLock: true) : null;
        using var binding = unet.CreateIoBinding();
        foreach (var (name, host, device) in buffers) binding.BindInput(name, device?.Value ?? host.Value);
        binding.BindOutput(outputMeta.Key, deviceOutput?.Value ?? output.Value);
        using var run = new RunOptions();
        if (options.Cuda.CudaGraph)
        {
            run.AddRunConfigEntry("gpu_graph_id", "1");
        }
        var sample = buffers.Single(b => b.Name == "sample");
        double Time(bool withCopies)
        {
            var clock = new Stopwatch();
            var times = new List<double>();
            for (int i = 0; i < 25; i++)
            {
                clock.Restart();
                if (withCopies) sample.Device?.Upload();
                unet.RunWithBinding(run, binding);
                if (withCopies) deviceOutput?.Download();
                if (i >= 5) times.Add(clock.Elapsed.TotalMilliseconds);
            }
            return Median(times);
        }
        double unetBare = Time(withCopies: false);
        double unetWithCopies = Time(withCopies: true);

        using var vaeOptions = ExecutionProviders.CreateSessionOptions(options, "vae_decoder");
        using var vae = new InferenceSession(Path("vae_decoder"), vaeOptions);
        var vaeMeta = vae.InputMetadata.First();
        using var latents = TensorBuffer.Create(vaeMeta.Value.ElementDataType, 1, 4, latent, latent);
        latents.Write(Randoms(latents.Length));
        using var plain = new RunOptions();
        double vaeBare = TimeRuns(() => { using var _ = vae.Run(plain, [vaeMeta.Key], [latents.Value], [vae.OutputNames[0]]); }, 3, 10);

        using var textOptions = ExecutionProviders.CreateSessionOptions(options, "text_encoder");
        using var text = new InferenceSession(Path("text_encoder"), textOptions);
        var idsMeta = text.InputMetadata.First();
        using var ids = TensorBuffer.Create(idsMeta.Value.ElementDataType, 2, 77);
        ids.Write(Enumerable.Range(0, 2 * 77).Select(i => 1 + i % 50).ToArray()); // ids every vocabulary has
        double textBare = TimeRuns(() => { using var _ = text.Run(plain, [idsMeta.Key], [ids.Value], [text.OutputNames[0]]); }, 3, 10);

        foreach (var (_, host, device) in buffers)
        {
            device?.Dispose();
            host.Dispose();
        }
        deviceOutput?.Dispose();
        output.Dispose();

        string pipelineLabel = options.Cuda.CudaGraph ? "cuda_graph" : "default";
        report.Line($"{label}: UNet {unetBare:F2} ms per call (2 rows, {latent}x{latent}), {unetWithCopies:F2} ms with the pipeline's per-step copies; " +
            $"VAE decode {vaeBare:F1} ms; text encoder {textBare:F2} ms");
        var figures = new JsonObject { ["unet_ms"] = unetBare, ["unet_with_copies_ms"] = unetWithCopies, ["vae_decode_ms"] = vaeBare, ["text_encoder_ms"] = textBare };
        if (_unetPerCall.TryGetValue(pipelineLabel, out var inPipeline) && _imageMs.TryGetValue(pipelineLabel, out var imageMs))
        {
            double bareImage = textBare + o.Steps * unetBare + vaeBare;
            report.Line($"{label}: pipeline ({pipelineLabel}) UNet per call / bare = {inPipeline / unetBare:F3}; one-image request {imageMs:F1} ms / bare " +
                $"(text + {o.Steps} × UNet + VAE = {bareImage:F1} ms) = {imageMs / bareImage:F3}");
            figures["pipeline_unet_ratio"] = inPipeline / unetBare;
            figures["pipeline_image_ratio"] = imageMs / bareImage;
        }
        report.Set(label, figures);
    }

    private static double TimeRuns(Action run, int warm, int count)
    {
        for (int i = 0; i < warm; i++) run();
        var times = new List<double>();
        var clock = new Stopwatch();
        for (int i = 0; i < count; i++)
        {
            clock.Restart();
            run();
            times.Add(clock.Elapsed.TotalMilliseconds);
        }
        return Median(times);
    }

    /// <summary>How far two renders of the same requests are apart, pixel by pixel.</summary>
    public void Compare(string label, IReadOnlyDictionary<int, IReadOnlyList<GeneratedImage>> a, IReadOnlyDictionary<int, IReadOnlyList<GeneratedImage>> b)
    {
        foreach (int batch in a.Keys.Intersect(b.Keys).Order()) Compare(label, batch, a[batch], b[batch]);
    }

    /// <summary>How far two renders of the same batch of <paramref name="batch"/> images are apart, pixel by pixel.</summary>
    public void Compare(string label, int batch, IReadOnlyList<GeneratedImage> a, IReadOnlyList<GeneratedImage> b)
    {
        var (identical, max, mean) = Difference(a, b);
        report.Line($"{label} B={batch}: {identical}/{a.Count} images byte-identical; pixel difference max {max}, mean {mean:F3} levels");
        report.Set($"{label} b{batch}", new JsonObject { ["identical"] = identical, ["max_levels"] = max, ["mean_levels"] = mean });
    }

    private static (int Identical, int Max, double Mean) Difference(IReadOnlyList<GeneratedImage> a, IReadOnlyList<GeneratedImage> b)
    {
        int identical = 0, max = 0;
        double sum = 0;
        long count = 0;
        for (int i = 0; i < Math.Min(a.Count, b.Count); i++)
        {
            if (a[i].Png.AsSpan().SequenceEqual(b[i].Png)) identical++;
            var x = ImageDecoder.Decode(a[i].Png, false, long.MaxValue, "a").Pixels;
            var y = ImageDecoder.Decode(b[i].Png, false, long.MaxValue, "b").Pixels;
            for (int k = 0; k < x.Length; k++)
            {
                int d = Math.Abs(x[k] - y[k]);
                max = Math.Max(max, d);
                sum += d;
            }
            count += x.Length;
        }
        return (identical, max, sum / Math.Max(1, count));
    }

    /// <summary>
    /// Every scheduler with its step on the device and on the host (one pipeline each way, B = 2, at most 10 steps: a
    /// check, kept short): request time each way, and the images compared, so that a scheduler whose step graph goes
    /// wrong on this GPU shows as more than float rounding (the CPU provider's tests hold the same graphs to the host step).
    /// </summary>
    public Task CompareSchedulersAsync(string directory, DiffusionOptions baseline) =>
        CompareStepPlacesAsync(directory, baseline, RenderFarm.Diffusion.Schedulers.SchedulerFactory.Names
            .Select(scheduler => ($"scheduler {scheduler}", Request(2, 7) with { Scheduler = scheduler, Steps = Math.Min(o.Steps, 10) }))
            .ToArray());

    /// <summary>
    /// A 4-image request in both batchings: throughput, and each image against itself rendered alone (Image must be
    /// byte-identical; Batch may move pixels).
    /// </summary>
    public async Task CompareBatchingAsync(string directory, DiffusionOptions baseline)
    {
        const int batch = 4;
        var request = Request(batch, 9);
        foreach (var batching in new[] { ModelBatching.Batch, ModelBatching.Image })
        {
            using var pipeline = StableDiffusionPipeline.Load(directory, baseline with { Batching = batching });
            var together = await pipeline.GenerateAsync(request);
            var clock = Stopwatch.StartNew();
            await pipeline.GenerateAsync(Request(batch, 10));
            double ms = clock.Elapsed.TotalMilliseconds;
            var alone = new List<GeneratedImage>();
            for (int i = 0; i < batch; i++) alone.Add((await pipeline.GenerateAsync(request with { Images = [request.Images[i]] }))[0]);
            var (identical, max, mean) = Difference(together, alone);
            report.Line($"batching {batching} B={batch}: {batch * 1000 / ms:F2} images/s; vs each image alone: {identical}/{batch} byte-identical, max {max}, mean {mean:F3} levels");
            report.Set($"batching_{batching}", new JsonObject { ["images_per_s"] = batch * 1000 / ms, ["identical_alone"] = identical, ["max_levels"] = max, ["mean_levels"] = mean });
        }
    }

    /// <summary>The same request in two fresh pipelines: with cuDNN's timed algorithm search, and with its heuristics.</summary>
    public async Task DeterminismAsync(string directory, DiffusionOptions baseline)
    {
        var request = Request(2, 11);
        foreach (var search in new[] { "EXHAUSTIVE", "HEURISTIC" })
        {
            var options = baseline with { Cuda = new CudaOptions { ConvAlgorithmSearch = search } };
            var renders = new List<IReadOnlyList<GeneratedImage>>();
            double unet = 0;
            for (int k = 0; k < 2; k++)
            {
                using var pipeline = StableDiffusionPipeline.Load(directory, options);
                renders.Add(await pipeline.GenerateAsync(request));
                var before = pipeline.Statistics.Components.Single(c => c.Component == "unet");
                await pipeline.GenerateAsync(request);
                var after = pipeline.Statistics.Components.Single(c => c.Component == "unet");
                unet = Ms(after.RunTime - before.RunTime) / Math.Max(1, after.Runs - before.Runs);
            }
            var (identical, max, mean) = Difference(renders[0], renders[1]);
            report.Line($"cuDNN {search}: two fresh pipelines, same request: {identical}/{request.Images.Count} byte-identical (max {max}, mean {mean:F3} levels); UNet {unet:F2} ms per call (4 rows)");
            report.Set($"determinism_{search}", new JsonObject { ["identical"] = identical, ["max_levels"] = max, ["unet_ms_per_call_4_rows"] = unet });
        }
    }
}
