using Grpc.Core;
using RenderFarm.Client;
using RenderFarm.Diffusion;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.ModelBuilder;
using RenderFarm.ModelBuilder.Lora;
using RenderFarm.Protocol;
using RenderFarm.Worker;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// SDXL base + refiner through the farm, from <c>farm submit --refiner</c>: a farm of its own whose two workers hold
/// different models (tiny-sdxl on one, tiny-sdxl-refiner on the other), so the base's stage and the refiner's stage
/// must run on different workers and the latents travel between them through Redis.
/// </summary>
public sealed class RefinerTests(RefinerTests.RefinerFarm fixture) : IClassFixture<RefinerTests.RefinerFarm>
{
    public sealed class RefinerFarm : IAsyncLifetime
    {
        public FarmCluster Cluster { get; private set; } = null!;

        public string Base => Path.Combine(Cluster.Root, "tiny-sdxl");

        public string Refiner => Path.Combine(Cluster.Root, "tiny-sdxl-refiner");

        /// <summary>An SDXL base whose UNet takes ControlNet residuals, for img2img + LoRA + ControlNet on the base's stage.</summary>
        public string ControlBase => Path.Combine(Cluster.Root, "tiny-sdxl-control");

        public string Loras => Path.Combine(Cluster.Root, "loras");

        public string ControlNets => Path.Combine(Cluster.Root, "controlnets");

        public async Task InitializeAsync()
        {
            Cluster = await FarmCluster.StartAsync(workers: 0);
            ModelPresets.Write("tiny-sdxl", Base);
            ModelPresets.Write("tiny-sdxl-refiner", Refiner);
            ModelPresets.Write("tiny-sdxl-control", ControlBase);
            Directory.CreateDirectory(Loras);
            LoraFileWriter.Write(ModelPresets.Get("tiny-sdxl"), Path.Combine(Loras, "xl-style.safetensors"), new LoraWriteOptions { Rank = 2, Seed = 22 });
            ControlNetWriter.Write(ModelPresets.Get("tiny-sdxl"), Path.Combine(ControlNets, "xl"), seed: 0);
            // The LoRAs and ControlNets are the base's worker's alone: the refiner's never needs them.
            await Cluster.StartWorkerAsync("base-worker", s =>
            {
                s.Remove($"Farm:Models:{FarmCluster.Model}");
                s["Farm:Models:tiny-sdxl"] = Base;
                s["Farm:Models:tiny-sdxl-control"] = ControlBase;
                s["Farm:Loras"] = Loras;
                s["Farm:ControlNets"] = ControlNets;
            });
            await Cluster.StartWorkerAsync("refiner-worker", s =>
            {
                s.Remove($"Farm:Models:{FarmCluster.Model}");
                s["Farm:Models:tiny-sdxl-refiner"] = Refiner;
            });
        }

        public async Task DisposeAsync() => await Cluster.DisposeAsync();
    }

    private FarmCluster Farm => fixture.Cluster;

    private static byte[] Pixels(byte[] png) => RenderFarm.Imaging.ImageDecoder.Decode(png, grey: false, long.MaxValue, "png").Pixels;

    private async Task<(int Exit, string Out, string Err)> FarmAsync(params string[] args)
    {
        var stdout = new StringWriter();
        var err = new StringWriter();
        var exit = await FarmCli.RunAsync(["--coordinator", Farm.CoordinatorUrl, .. args], stdout, err, CancellationToken.None);
        return (exit, stdout.ToString(), err.ToString());
    }

    [Fact]
    public async Task TheBaseAndTheRefinerRenderOnTheirOwnWorkersAndGiveTheOneProcessRender()
    {
        var file = Path.Combine(Farm.Root, "refined.jsonl");
        await File.WriteAllLinesAsync(file,
        [
            """{"prompt": "a harbour at dawn", "negative": "blurry", "seed": 8}""",
            """{"prompt": "a red boat", "seed": 9}""",
            """{"prompt": "a red boat", "seed": 9, "refiner": "none"}""",
        ]);

        var submit = await FarmAsync("submit", file, "--model", "tiny-sdxl", "--refiner", "tiny-sdxl-refiner", "--refiner-start", "0.8",
            "--steps", "10", "--guidance", "5", "--size", "64x48", "--watch");

        Assert.True(submit.Exit == 0, submit.Err);
        var jobId = submit.Out.Trim().Split('\n')[^1].Trim();
        var events = await Farm.WatchToEndAsync(jobId, TimeSpan.FromMinutes(1));
        Assert.Equal((JobState.Completed, 3u, 0u), (events[^1].JobFinished.State, events[^1].JobFinished.ImagesDone, events[^1].JobFinished.ImagesFailed));
        // Shard 0 (the refined prompts): its base stage on the base's worker, then its refiner stage on the refiner's.
        // Shard 1 (refiner: none) is the base's alone. Each image is stored once.
        Assert.Equal([(0u, "base-worker", "base"), (0u, "refiner-worker", "refiner"), (1u, "base-worker", "")],
            events.Where(e => e.ShardStarted is not null).Select(e => (e.ShardStarted.ShardIndex, e.ShardStarted.WorkerId, e.ShardStarted.Stage)).Order());
        Assert.Equal([0u, 1u, 2u], events.Where(e => e.ImageDone is not null).Select(e => e.ImageDone.Index).Order());
        Assert.Equal(["refiner-worker", "refiner-worker", "base-worker"],
            events.Where(e => e.ImageDone is not null).OrderBy(e => e.ImageDone.Index).Select(e => e.ImageDone.WorkerId));
        // The latents handed over are dropped once the refiner stored the images.
        Assert.Equal(0, await Farm.Redis.HashLengthAsync(RenderFarm.FarmState.FarmKeys.JobLatents(jobId)));
        // farm status and farm jobs name the refiner and the switch.
        Assert.Contains("model     tiny-sdxl, refiner tiny-sdxl-refiner at 0.8\n", (await FarmAsync("status", jobId)).Out);
        Assert.Contains("\"refiner\":\"tiny-sdxl-refiner\",\"refiner_start\":0.8", (await FarmAsync("status", jobId, "--json")).Out);
        Assert.Contains("tiny-sdxl, refiner tiny-sdxl-refiner at 0.8", (await FarmAsync("jobs")).Out);

        var images = (await Farm.Jobs.DownloadAllAsync(jobId)).OrderBy(i => i.Info.Index).ToList();
        var parameters = images.Select(i => PngMetadata.Read(i.Png).Text["parameters"]).ToList();
        Assert.Equal("a harbour at dawn\nNegative prompt: blurry\nSteps: 10, Sampler: Euler, CFG scale: 5, Seed: 8, Size: 64x48, Model: tiny-sdxl, " +
                     "Refiner: tiny-sdxl-refiner, Refiner switch at: 0.8", parameters[0]);
        Assert.EndsWith("Model: tiny-sdxl", parameters[2]);

        // The one-process hand-off (RenderLatentsAsync, then the refiner from its latents), as README "SDXL base + refiner" documents it.
        var options = new WorkerOptions().ToDiffusionOptions();
        using var basePipeline = StableDiffusionPipeline.Load(fixture.Base, options);
        using var refinerPipeline = StableDiffusionPipeline.Load(fixture.Refiner, options);
        var request = new GenerationRequest([new ImagePrompt("a harbour at dawn", "blurry", 8), new ImagePrompt("a red boat", "", 9)], 64, 48, 10, 5f, "euler", "tiny-sdxl");
        var latents = await basePipeline.RenderLatentsAsync(request with { DenoisingEnd = 0.8f });
        var direct = await refinerPipeline.GenerateAsync(request with
        {
            ModelName = "tiny-sdxl-refiner", DenoisingStart = 0.8f, InitLatents = latents, BaseModel = "tiny-sdxl",
        });
        for (var i = 0; i < 2; i++)
        {
            Assert.Equal(PngMetadata.Read(direct[i].Png).Text["parameters"], parameters[i]);
            var (farm, local) = (Pixels(images[i].Png), Pixels(direct[i].Png));
            Assert.Equal(local.Length, farm.Length);
            // Within one level: the farm's process renders with the same models, schedule and batch, so at most rounding differs.
            Assert.True(farm.Zip(local).Max(p => Math.Abs(p.First - p.Second)) <= 1, $"image {i} differs from the one-process render by more than one level");
        }
    }

    [Fact]
    public async Task AnImg2ImgBaseWithALoraAndAControlNetHandsItsLatentsToTheRefinerWhichRendersWithoutThem()
    {
        var init = Path.Combine(Farm.Root, "init.png");
        var edges = Path.Combine(Farm.Root, "edges.png");
        await File.WriteAllBytesAsync(init, Gradient(64, 48, shift: 0));
        await File.WriteAllBytesAsync(edges, Gradient(64, 48, shift: 90));
        var file = Path.Combine(Farm.Root, "img2img-refined.jsonl");
        await File.WriteAllLinesAsync(file, [$$"""{"prompt": "a harbour <lora:xl-style:0.8>", "seed": 5, "init_image": "{{init}}", "strength": 0.7}"""]);

        var submit = await FarmAsync("submit", file, "--model", "tiny-sdxl-control", "--refiner", "tiny-sdxl-refiner", "--refiner-start", "0.8",
            "--control", $"xl:{edges}:0.9", "--steps", "10", "--guidance", "5", "--size", "64x48");

        Assert.True(submit.Exit == 0, submit.Err);
        var jobId = submit.Out.Trim().Split('\n')[^1].Trim();
        var events = await Farm.WatchToEndAsync(jobId, TimeSpan.FromMinutes(1));
        Assert.Equal((JobState.Completed, 1u, 0u), (events[^1].JobFinished.State, events[^1].JobFinished.ImagesDone, events[^1].JobFinished.ImagesFailed));
        Assert.Equal(["base-worker", "refiner-worker"], events.Where(e => e.ShardStarted is not null).Select(e => e.ShardStarted.WorkerId));
        var png = Assert.Single(await Farm.Jobs.DownloadAllAsync(jobId)).Png;

        // One process: the base renders img2img with the LoRA and the ControlNet up to the switch; the refiner continues
        // from the base's strength with neither (the prompt keeps its tag), and records the base's ControlNet.
        var options = new WorkerOptions().ToDiffusionOptions();
        using var basePipeline = StableDiffusionPipeline.Load(fixture.ControlBase, options, new ModelExtensions
        {
            Loras = new Diffusion.Lora.LoraLibrary(fixture.Loras), ControlNets = new Diffusion.ControlNets.ControlNetLibrary(fixture.ControlNets),
        });
        using var refinerPipeline = StableDiffusionPipeline.Load(fixture.Refiner, options);
        var unit = new Diffusion.ControlNets.ControlNetUnit("xl", await File.ReadAllBytesAsync(edges), 0.9f);
        var shortHash = Diffusion.Lora.LoraFile.Open(Path.Combine(fixture.Loras, "xl-style.safetensors")).ShortHash;
        var request = new GenerationRequest([new ImagePrompt("a harbour <lora:xl-style:0.8>", "", 5)], 64, 48, 10, 5f, "euler", "tiny-sdxl-control") { Strength = 0.7f };
        var latents = await basePipeline.RenderLatentsAsync(request with
        {
            DenoisingEnd = 0.8f, InitImage = await File.ReadAllBytesAsync(init), ControlNets = [unit],
        });
        var direct = Assert.Single(await refinerPipeline.GenerateAsync(request with
        {
            ModelName = "tiny-sdxl-refiner", DenoisingStart = 0.8f, InitLatents = latents, BaseModel = "tiny-sdxl-control",
            ApplyPromptLoras = false, BaseControlNets = [unit with { Image = [] }],
            BaseLoraHashes = new Dictionary<string, string> { ["xl-style"] = shortHash },
        }));
        var parameters = AssertLikeOneProcessRender(png, direct.Png);
        Assert.StartsWith("a harbour <lora:xl-style:0.8>\n", parameters);
        // The base's LoRA, recorded with the hash the base's worker offered (the refiner's holds no LoRA files).
        Assert.Contains($"Lora hashes: \"xl-style: {shortHash}\"", parameters);
        Assert.Contains("Denoising strength: 0.7", parameters);
        Assert.Contains("ControlNet 0: \"Module: none, Model: xl, Weight: 0.9", parameters);
        Assert.Contains("Model: tiny-sdxl-control", parameters);
        Assert.EndsWith($"Refiner: tiny-sdxl-refiner, Refiner switch at: 0.8, Lora hashes: \"xl-style: {shortHash}\"", parameters);

        // The base's LoRA and ControlNet did steer it: without them the hand-off gives other latents.
        var plainLatents = await basePipeline.RenderLatentsAsync(request with
        {
            Images = [new ImagePrompt("a harbour", "", 5)], DenoisingEnd = 0.8f, InitImage = await File.ReadAllBytesAsync(init),
        });
        Assert.NotEqual(latents, plainLatents);
    }

    [Fact]
    public async Task AnInpaintingBaseHandsItsLatentsToTheRefinerWhichKeepsTheUnmaskedArea()
    {
        const int width = 128, height = 64;
        var init = Path.Combine(Farm.Root, "inpaint-init.png");
        var halfMask = Path.Combine(Farm.Root, "inpaint-left-half.png");
        await File.WriteAllBytesAsync(init, Gradient(width, height, shift: 30));
        await File.WriteAllBytesAsync(halfMask, Mask(width, height, x => x < width / 2));
        var file = Path.Combine(Farm.Root, "inpaint-refined.jsonl");
        // Two seeds repainting the left half.
        await File.WriteAllLinesAsync(file,
        [
            $$"""{"prompt": "a boat", "seed": 1, "init_image": "{{init}}", "mask": "{{halfMask}}"}""",
            $$"""{"prompt": "a boat", "seed": 2, "init_image": "{{init}}", "mask": "{{halfMask}}"}""",
        ]);

        var submit = await FarmAsync("submit", file, "--model", "tiny-sdxl", "--refiner", "tiny-sdxl-refiner", "--refiner-start", "0.8",
            "--steps", "10", "--guidance", "5", "--size", $"{width}x{height}");

        Assert.True(submit.Exit == 0, submit.Err);
        var jobId = submit.Out.Trim().Split('\n')[^1].Trim();
        var events = await Farm.WatchToEndAsync(jobId, TimeSpan.FromMinutes(1));
        Assert.Equal((JobState.Completed, 2u, 0u), (events[^1].JobFinished.State, events[^1].JobFinished.ImagesDone, events[^1].JobFinished.ImagesFailed));
        Assert.Equal(["base-worker", "refiner-worker"], events.Where(e => e.ShardStarted is not null).Select(e => e.ShardStarted.WorkerId));
        Assert.Equal(["refiner-worker", "refiner-worker"],
            events.Where(e => e.ImageDone is not null).Select(e => e.ImageDone.WorkerId));
        var images = (await Farm.Jobs.DownloadAllAsync(jobId)).OrderBy(i => i.Info.Index).Select(i => i.Png).ToList();

        // One process: the base inpaints up to the switch; the refiner continues with the same init image and mask.
        var options = new WorkerOptions().ToDiffusionOptions();
        using var basePipeline = StableDiffusionPipeline.Load(fixture.Base, options);
        using var refinerPipeline = StableDiffusionPipeline.Load(fixture.Refiner, options);
        var request = new GenerationRequest([new ImagePrompt("a boat", "", 1)], width, height, 10, 5f, "euler", "tiny-sdxl")
        {
            InitImage = await File.ReadAllBytesAsync(init), MaskImage = await File.ReadAllBytesAsync(halfMask),
        };
        var latents = await basePipeline.RenderLatentsAsync(request with { DenoisingEnd = 0.8f });
        var direct = Assert.Single(await refinerPipeline.GenerateAsync(request with
        {
            ModelName = "tiny-sdxl-refiner", DenoisingStart = 0.8f, InitLatents = latents, BaseModel = "tiny-sdxl",
        }));
        var parameters = AssertLikeOneProcessRender(images[0], direct.Png);
        Assert.Equal("a boat\nSteps: 10, Sampler: Euler, CFG scale: 5, Seed: 1, Size: 128x64, Model: tiny-sdxl, Denoising strength: 1, " +
                     "Refiner: tiny-sdxl-refiner, Refiner switch at: 0.8", parameters);

        // Inpainted: the kept (right) half is the init image's, whatever the seed; the repainted (left) half follows the
        // seed. (Not compared with the init image's pixels: the tiny VAE's random weights do not reproduce an image, and
        // its decoder's attention mixes every position a little. That the kept latents are the init image's, exactly as
        // an uninterrupted inpaint keeps them, is RefinerModelTests.AnInpaintingBaseStoppedAtTheSwitch….) Columns near
        // the mask's edge are left out.
        var (first, second) = (Pixels(images[0]), Pixels(images[1]));
        double Distance(int fromX, int toX)
        {
            long sum = 0, n = 0;
            for (int y = 0; y < height; y++)
                for (int x = fromX; x < toX; x++)
                    for (int c = 0; c < 3; c++, n++) sum += Math.Abs(first[(y * width + x) * 3 + c] - second[(y * width + x) * 3 + c]);
            return (double)sum / n;
        }
        var (repainted, kept) = (Distance(0, width / 2 - 16), Distance(width / 2 + 16, width));
        Assert.True(kept <= 4, $"the unmasked half should not follow the seed (mean difference {kept:F2} levels)");
        Assert.True(repainted > 8 * Math.Max(kept, 1), $"the masked half should be repainted per seed (mean difference {repainted:F2} levels, unmasked half {kept:F2})");
    }

    /// <summary>A black-and-white mask: white (repaint) where <paramref name="repaint"/> says so for the column.</summary>
    private static byte[] Mask(int width, int height, Func<int, bool> repaint)
    {
        var rgb = new byte[width * height * 3];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                rgb.AsSpan((y * width + x) * 3, 3).Fill(repaint(x) ? (byte)255 : (byte)0);
        return RenderFarm.Imaging.PngWriter.Encode(new RenderFarm.Imaging.DecodedImage(rgb, width, height, 3));
    }

    [Fact]
    public async Task WithHiresFixTheBaseHandsOverInTheSecondPassAndTheRefinerFinishesItAtTheLargerSize()
    {
        var file = Path.Combine(Farm.Root, "hires-refined.txt");
        await File.WriteAllLinesAsync(file, ["a lighthouse on a cliff"]);

        var submit = await FarmAsync("submit", file, "--model", "tiny-sdxl", "--refiner", "tiny-sdxl-refiner", "--refiner-start", "0.8", "--seed", "6",
            "--hires", "2x", "--hires-denoise", "0.5", "--hires-upscaler", "latent", "--steps", "10", "--guidance", "5", "--size", "64x48");

        Assert.True(submit.Exit == 0, submit.Err);
        var jobId = submit.Out.Trim().Split('\n')[^1].Trim();
        var events = await Farm.WatchToEndAsync(jobId, TimeSpan.FromMinutes(1));
        Assert.Equal((JobState.Completed, 1u), (events[^1].JobFinished.State, events[^1].JobFinished.ImagesDone));
        Assert.Equal(["base-worker", "refiner-worker"], events.Where(e => e.ShardStarted is not null).Select(e => e.ShardStarted.WorkerId));
        var png = Assert.Single(await Farm.Jobs.DownloadAllAsync(jobId)).Png;
        Assert.Equal((128, 96), (PngMetadata.Read(png).Width, PngMetadata.Read(png).Height));

        var options = new WorkerOptions().ToDiffusionOptions();
        using var basePipeline = StableDiffusionPipeline.Load(fixture.Base, options);
        using var refinerPipeline = StableDiffusionPipeline.Load(fixture.Refiner, options);
        var request = new GenerationRequest([new ImagePrompt("a lighthouse on a cliff", "", 6)], 64, 48, 10, 5f, "euler", "tiny-sdxl")
        {
            Hires = new Diffusion.HiresFix(2f, 0.5f, Upscaler: "latent"),
        };
        var latents = await basePipeline.RenderLatentsAsync(request with { DenoisingEnd = 0.8f });
        var direct = Assert.Single(await refinerPipeline.GenerateAsync(request with
        {
            ModelName = "tiny-sdxl-refiner", DenoisingStart = 0.8f, InitLatents = latents, BaseModel = "tiny-sdxl",
        }));
        var parameters = AssertLikeOneProcessRender(png, direct.Png);
        Assert.Contains("Size: 64x48, Model: tiny-sdxl", parameters);
        Assert.Contains("Denoising strength: 0.5", parameters);
        Assert.Contains("Hires upscale: 2, Hires upscaler: Latent", parameters);
        Assert.EndsWith("Refiner: tiny-sdxl-refiner, Refiner switch at: 0.8", parameters);
    }

    /// <summary>The farm's PNG against the one-process render's: the same parameters, pixels within one level. Returns the parameters.</summary>
    private static string AssertLikeOneProcessRender(byte[] farmPng, byte[] localPng)
    {
        var parameters = PngMetadata.Read(farmPng).Text["parameters"];
        Assert.Equal(PngMetadata.Read(localPng).Text["parameters"], parameters);
        var (farm, local) = (Pixels(farmPng), Pixels(localPng));
        Assert.Equal(local.Length, farm.Length);
        Assert.True(farm.Zip(local).Max(p => Math.Abs(p.First - p.Second)) <= 1, "the farm's image differs from the one-process render by more than one level");
        return parameters;
    }

    /// <summary>A diagonal gradient, shifted: an init image or a control image with structure.</summary>
    private static byte[] Gradient(int width, int height, int shift)
    {
        var rgb = new byte[width * height * 3];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                for (int c = 0; c < 3; c++)
                    rgb[(y * width + x) * 3 + c] = (byte)((x * 4 + y * 3 + c * 40 + shift) % 256);
        return RenderFarm.Imaging.PngWriter.Encode(new RenderFarm.Imaging.DecodedImage(rgb, width, height, 3));
    }

    private static JobHeader Header(Action<GenerationParams> set)
    {
        var header = new JobHeader
        {
            Params = new GenerationParams { Model = "tiny-sdxl", Width = 64, Height = 64, Steps = 4, GuidanceScale = 5f, Refiner = "tiny-sdxl-refiner", RefinerStart = 0.8f },
            Seeds = { 1 },
        };
        set(header.Params);
        return header;
    }

    [Theory]
    [InlineData("ghost", "params.refiner: refiner 'ghost' is not held by any online worker (online models: tiny-sdxl, tiny-sdxl-control, tiny-sdxl-refiner)")]
    [InlineData("start", "params.refiner_start must be a number strictly between 0 and 1 (the share of the steps the base renders) (got 1.2)")]
    [InlineData("lone-start", "params.refiner_start needs a refiner (got 0.5 with none)")]
    [InlineData("refiner-as-base", "params.refiner: model 'tiny-sdxl-refiner' is an SDXL refiner; a refiner continues a base model's render")]
    public async Task AnUnusableRefinerIsRefusedAtSubmitWithTheReason(string case_, string expected)
    {
        var header = Header(p =>
        {
            switch (case_)
            {
                case "ghost": p.Refiner = "ghost"; break;
                case "start": p.RefinerStart = 1.2f; break;
                case "lone-start": (p.Refiner, p.RefinerStart) = ("", 0.5f); break;
                case "refiner-as-base": (p.Model, p.Refiner) = ("tiny-sdxl-refiner", "tiny-sdxl"); break;
            }
        });

        var error = await Assert.ThrowsAsync<RpcException>(() => Farm.SubmitAsync(header, [new PromptItem { Prompt = "a boat" }]));

        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
        Assert.Contains(expected, error.Status.Detail);
    }

    [Fact]
    public async Task APromptsRefinerColumnIsCheckedLikeTheFlag()
    {
        var file = Path.Combine(Farm.Root, "bad-refiner.csv");
        await File.WriteAllLinesAsync(file, ["prompt,refiner", "a boat,", "a ship,ghost"]);

        var submit = await FarmAsync("submit", file, "--model", "tiny-sdxl", "--refiner", "tiny-sdxl-refiner", "--steps", "2", "--size", "64x64");

        Assert.Equal(2, submit.Exit);
        Assert.Contains("prompts[1].refiner: refiner 'ghost' is not held by any online worker", submit.Err);
    }
}
