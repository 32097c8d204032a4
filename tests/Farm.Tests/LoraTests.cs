using System.Text.Json;
using Grpc.Core;
using RenderFarm.Client;
using RenderFarm.Diffusion;
using RenderFarm.Diffusion.Lora;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Imaging;
using RenderFarm.ModelBuilder;
using RenderFarm.ModelBuilder.Lora;
using RenderFarm.Protocol;
using RenderFarm.Worker;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// LoRAs through the farm: a file on the worker's Farm:Loras folder, asked for by prompt tag or by the loras field. A
/// farm of its own (coordinator, Redis, one worker with the LoRA folder), so the shared farm's workers stay as they are.
/// </summary>
public sealed class LoraTests(LoraTests.LoraFarm fixture) : IClassFixture<LoraTests.LoraFarm>
{
    public sealed class LoraFarm : IAsyncLifetime
    {
        public FarmCluster Cluster { get; private set; } = null!;

        public async Task InitializeAsync() => Cluster = await FarmCluster.StartAsync(workers: 0);

        public async Task DisposeAsync() => await Cluster.DisposeAsync();
    }

    private FarmCluster Farm => fixture.Cluster;

    /// <summary>The model the LoRA worker serves under.</summary>
    private const string Model = "tiny-lora";

    private static JobHeader Header(string model = Model) => new()
    {
        Params = new GenerationParams { Model = model, Width = 64, Height = 64, Steps = 4, GuidanceScale = 7.5f, Scheduler = "euler" },
        Seeds = { 5 },
    };

    private async Task<string> StartLoraWorkerAsync()
    {
        var folder = Path.Combine(Farm.Root, "loras");
        if (!Directory.Exists(folder))
        {
            Directory.CreateDirectory(folder);
            // What `modelbuilder lora tiny --out style.safetensors --convs` writes (kohya layout, UNet and text encoder).
            LoraFileWriter.Write(ModelPresets.Get("tiny"), Path.Combine(folder, "style.safetensors"),
                new LoraWriteOptions { Rank = 4, Seed = 11, Convolutions = true });
            // `modelbuilder lora tiny --out detail.safetensors --layout peft --rank 2`
            LoraFileWriter.Write(ModelPresets.Get("tiny"), Path.Combine(folder, "detail.safetensors"),
                new LoraWriteOptions { Layout = LoraLayout.Peft, Rank = 2, Seed = 12 });
            await Farm.StartWorkerAsync("lora-worker", s =>
            {
                s.Remove($"Farm:Models:{FarmCluster.Model}");
                s[$"Farm:Models:{Model}"] = Farm.ModelDirectory;
                s["Farm:Loras"] = folder;
            });
            await Farm.Jobs.WaitForWorkerAsync("lora-worker", w => w.Loras.Count == 2);
        }
        return folder;
    }

    private static byte[] Pixels(byte[] png) => ImageDecoder.Decode(png, grey: false, long.MaxValue, "png").Pixels;

    [Fact]
    public async Task ATagAndTheLorasFieldRenderTheLoraAsTheWorkersPipelineDoesAndAPromptWithoutOneRendersTheBase()
    {
        var folder = await StartLoraWorkerAsync();

        var submitted = await Farm.SubmitAsync(Header(),
        [
            new PromptItem { Prompt = "a lighthouse at dusk" },
            new PromptItem { Prompt = "a lighthouse at dusk <lora:style:0.8>" },
            new PromptItem { Prompt = "a lighthouse at dusk", Loras = { new Lora { Name = "style", Weight = 0.8f } } },
            new PromptItem { Prompt = "a harbour <lora:style:0.8>" },
            new PromptItem { Prompt = "a lighthouse at dusk <lora:style:0.8> <lora:detail:0.5>" },
        ]);
        // Shards group by settings and LoRA set: the two prompts tagged style share one; the field's LoRA is part of
        // its prompt's settings, so that prompt is a shard of its own although it renders with the same set.
        Assert.Equal(4u, submitted.ShardCount);
        var finished = (await Farm.WatchToEndAsync(submitted.JobId, TimeSpan.FromMinutes(2)))[^1].JobFinished;
        Assert.Equal(JobState.Completed, finished.State);
        var images = (await Farm.Jobs.DownloadAllAsync(submitted.JobId)).OrderBy(i => i.Info.Index).ToList();

        Assert.NotEqual(Pixels(images[0].Png), Pixels(images[1].Png));
        Assert.Equal(Pixels(images[1].Png), Pixels(images[2].Png));
        Assert.DoesNotContain("Lora hashes", PngMetadata.Read(images[0].Png).Text["parameters"]);
        Assert.Contains("Lora hashes: \"style: ", PngMetadata.Read(images[1].Png).Text["parameters"]);

        // The same request on a pipeline of the worker's settings, outside the farm (one image per run, as a CPU worker renders).
        var worker = new WorkerOptions();
        using var pipeline = StableDiffusionPipeline.Load(Farm.ModelDirectory, worker.ToDiffusionOptions(),
            new ModelExtensions { Loras = new LoraLibrary(folder) });
        foreach (var (index, prompt) in new[] { (1, "a lighthouse at dusk <lora:style:0.8>"), (4, "a lighthouse at dusk <lora:style:0.8> <lora:detail:0.5>") })
        {
            var direct = await pipeline.GenerateAsync(new GenerationRequest([new ImagePrompt(prompt, "", 5)], 64, 64, 4, 7.5f, "euler", Model));
            Assert.Equal(Pixels(direct[0].Png), Pixels(images[index].Png));
        }
        Assert.NotEqual(Pixels(images[1].Png), Pixels(images[4].Png));
        Assert.Contains("detail: ", PngMetadata.Read(images[4].Png).Text["parameters"]);
    }

    [Fact]
    public async Task ALoraNoWorkerOfTheModelOffersIsRefusedAtSubmitNamingWhatIsOffered()
    {
        await StartLoraWorkerAsync();

        var error = await Assert.ThrowsAsync<RpcException>(() => Farm.SubmitAsync(Header(),
            [new PromptItem { Prompt = "a lighthouse <lora:nosuch:0.5>" }]));

        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
        Assert.Contains("LoRA 'nosuch' is not offered by any online worker of model 'tiny-lora' (they offer: detail, style)", error.Status.Detail);
    }

    [Fact]
    public async Task AnSdxlLoraIsRefusedAtSubmitForAnSdModelAndFarmModelsListsTheLorasThatFitWithTheirHash()
    {
        // One folder with a LoRA of each family, as users drop them on the volume: the worker offers both, each for the
        // models of its family, so an SD 1.x model's worker offers the SDXL one for none of its models.
        const string model = "tiny-mixed-loras";
        var folder = Path.Combine(Farm.Root, "loras-mixed");
        Directory.CreateDirectory(folder);
        var sdFile = Path.Combine(folder, "sd-style.safetensors");
        LoraFileWriter.Write(ModelPresets.Get("tiny"), sdFile, new LoraWriteOptions { Rank = 2, Seed = 21 });
        LoraFileWriter.Write(ModelPresets.Get("tiny-sdxl"), Path.Combine(folder, "xl-style.safetensors"), new LoraWriteOptions { Rank = 2, Seed = 22 });
        await Farm.StartWorkerAsync("mixed-lora-worker", s =>
        {
            s.Remove($"Farm:Models:{FarmCluster.Model}");
            s[$"Farm:Models:{model}"] = Farm.ModelDirectory;
            s["Farm:Loras"] = folder;
        });
        await Farm.Jobs.WaitForWorkerAsync("mixed-lora-worker", w => w.Loras.Count == 2);

        // By tag and by the loras field (farm submit --lora): refused before anything is queued, naming family and model.
        const string refusal = $"LoRA 'xl-style' (an SDXL LoRA) does not fit model '{model}', which is of another family";
        var byTag = await Assert.ThrowsAsync<RpcException>(() => Farm.SubmitAsync(Header(model),
            [new PromptItem { Prompt = "a lighthouse <lora:xl-style:0.5>" }]));
        var byField = await Assert.ThrowsAsync<RpcException>(() => Farm.SubmitAsync(Header(model),
            [new PromptItem { Prompt = "a lighthouse", Loras = { new Lora { Name = "xl-style", Weight = 0.5f } } }]));
        Assert.Equal((StatusCode.InvalidArgument, StatusCode.InvalidArgument), (byTag.StatusCode, byField.StatusCode));
        Assert.Contains(refusal, byTag.Status.Detail);
        Assert.Contains(refusal, byField.Status.Detail);

        // farm models: the LoRAs a prompt of the model may name, with the short hash its PNGs carry and the family.
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        Assert.Equal(0, await FarmCli.RunAsync(["--coordinator", Farm.CoordinatorUrl, "models", "--json"], stdout, stderr, CancellationToken.None));
        var listed = JsonDocument.Parse(stdout.ToString()).RootElement.EnumerateArray().Single(m => m.GetProperty("name").GetString() == model);
        var lora = Assert.Single(listed.GetProperty("loras").EnumerateArray());
        Assert.Equal(("sd-style", LoraFile.Open(sdFile).ShortHash, "sd"),
            (lora.GetProperty("name").GetString(), lora.GetProperty("short_hash").GetString(), lora.GetProperty("family").GetString()));
    }
}
