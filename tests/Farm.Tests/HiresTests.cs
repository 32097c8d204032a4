using System.Text.Json;
using Grpc.Core;
using RenderFarm.Client;
using RenderFarm.Diffusion;
using RenderFarm.Diffusion.Upscaling;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Imaging;
using RenderFarm.ModelBuilder.Upscalers;
using RenderFarm.Protocol;
using RenderFarm.Worker;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// Hires fix and upscaling through the farm, from <c>farm submit</c> (flags and jsonl/csv columns) to the stored PNGs:
/// a farm of its own whose worker offers two upscalers from its Farm:Upscalers folder (the builder's tiny RRDBNets, ×2
/// and ×4, as <c>modelbuilder upscaler</c> writes them).
/// </summary>
public sealed class HiresTests(HiresTests.UpscalerFarm fixture) : IClassFixture<HiresTests.UpscalerFarm>, IDisposable
{
    public void Dispose() => Directory.Delete(_directory, recursive: true);

    public sealed class UpscalerFarm : IAsyncLifetime
    {
        public FarmCluster Cluster { get; private set; } = null!;

        public string Upscalers => Path.Combine(Cluster.Root, "upscalers");

        public async Task InitializeAsync()
        {
            Cluster = await FarmCluster.StartAsync(workers: 0);
            UpscalerPresets.Write("rrdb-tiny-x2", Path.Combine(Upscalers, "x2"), seed: 1);
            UpscalerPresets.Write("rrdb-tiny-x4", Path.Combine(Upscalers, "x4"), seed: 2);
            await Cluster.StartWorkerAsync("upscaling-worker", s => s["Farm:Upscalers"] = Upscalers);
            await Cluster.Jobs.WaitForWorkerAsync("upscaling-worker", w => w.Upscalers.Count == 2);
        }

        public async Task DisposeAsync() => await Cluster.DisposeAsync();
    }

    private FarmCluster Farm => fixture.Cluster;

    private readonly string _directory = Directory.CreateTempSubdirectory("farm-hires-").FullName;

    private async Task<(int Exit, string Out, string Err)> FarmAsync(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var exit = await FarmCli.RunAsync(["--coordinator", Farm.CoordinatorUrl, .. args], stdout, stderr, CancellationToken.None);
        return (exit, stdout.ToString(), stderr.ToString());
    }

    /// <summary>Each pulled PNG (by its manifest's order) with its size and text chunks.</summary>
    private static List<(int Width, int Height, IReadOnlyDictionary<string, string> Text, byte[] Png)> Pulled(string folder) =>
        File.ReadAllLines(Path.Combine(folder, "manifest.jsonl"))
            .Select(line => JsonDocument.Parse(line).RootElement.GetProperty("file").GetString()!)
            .Select(file => File.ReadAllBytes(Path.Combine(folder, file)))
            .Select(png => { var (w, h, text) = PngMetadata.Read(png); return (w, h, text, png); })
            .ToList();

    [Fact]
    public async Task JsonlColumnsOverTheHiresFlagsRenderTheLargerSizesWithA1111Parameters()
    {
        var prompts = Path.Combine(_directory, "hires.jsonl");
        await File.WriteAllLinesAsync(prompts,
        [
            """{"prompt": "a lighthouse at dusk"}""",
            """{"prompt": "a lighthouse at dusk", "hires_upscaler": "x4", "hires_steps": 3}""",
            """{"prompt": "a harbour", "hires": "off", "upscale": "x2"}""",
        ]);
        var output = Path.Combine(_directory, "out-jsonl");

        var submit = await FarmAsync("submit", prompts, "--seeds", "7", "--size", "64x64", "--steps", "4",
            "--hires", "2x", "--hires-steps", "2", "--hires-denoise", "0.5", "--hires-upscaler", "latent", "--watch", "--out", output);

        Assert.True(submit.Exit == 0, submit.Err);
        var images = Pulled(output);
        Assert.Equal(3, images.Count);
        Assert.All(images, i => Assert.Equal((128, 128), (i.Width, i.Height)));
        Assert.Equal("a lighthouse at dusk\nSteps: 4, Sampler: Euler, CFG scale: 7.5, Seed: 7, Size: 64x64, Model: tiny, " +
                     "Denoising strength: 0.5, Hires upscale: 2, Hires steps: 2, Hires upscaler: Latent", images[0].Text["parameters"]);
        Assert.EndsWith("Denoising strength: 0.5, Hires upscale: 2, Hires steps: 3, Hires upscaler: x4", images[1].Text["parameters"]);
        Assert.DoesNotContain("Hires", images[2].Text["parameters"]);
        Assert.Equal("Postprocess upscale by: 2, Postprocess upscaler: x2", images[2].Text["postprocessing"]);

        // What the farm stored is what the worker's pipeline renders for the same request outside the farm.
        using var upscalers = new UpscalerLibrary(fixture.Upscalers, new WorkerOptions().ToDiffusionOptions());
        using var pipeline = StableDiffusionPipeline.Load(Farm.ModelDirectory, new WorkerOptions().ToDiffusionOptions(), new ModelExtensions { Upscalers = upscalers });
        var direct = await pipeline.GenerateAsync(new GenerationRequest([new ImagePrompt("a lighthouse at dusk", "", 7)], 64, 64, 4, 7.5f, "euler", "tiny")
        {
            Hires = new Diffusion.HiresFix(2f, 0.5f, 3, "x4"),
        });
        Assert.Equal(Pixels(direct[0].Png), Pixels(images[1].Png));
    }

    [Fact]
    public async Task CsvColumnsAndTheUpscaleFlagGiveEachPromptItsSize()
    {
        var prompts = Path.Combine(_directory, "upscale.csv");
        await File.WriteAllLinesAsync(prompts,
        [
            "prompt,upscale,hires,hires_denoise",
            "a castle,,,",          // --upscale x4: 256x256
            "a ship,none,1.5,0.6",  // no upscale; hires 1.5x: 96x96
            "a fox,x2,2,",          // hires 2x then x2: 256x256
        ]);
        var output = Path.Combine(_directory, "out-csv");

        var submit = await FarmAsync("submit", prompts, "--seeds", "3", "--size", "64x64", "--steps", "3", "--upscale", "x4", "--watch", "--out", output);

        Assert.True(submit.Exit == 0, submit.Err);
        var images = Pulled(output);
        Assert.Equal([(256, 256), (96, 96), (256, 256)], images.Select(i => (i.Width, i.Height)));
        Assert.Equal("Postprocess upscale by: 4, Postprocess upscaler: x4", images[0].Text["postprocessing"]);
        Assert.False(images[1].Text.ContainsKey("postprocessing"));
        Assert.Contains("Denoising strength: 0.6, Hires upscale: 1.5, Hires upscaler: Lanczos", images[1].Text["parameters"]);
        Assert.Contains("Hires upscale: 2, Hires upscaler: Lanczos", images[2].Text["parameters"]);
        Assert.Equal("Postprocess upscale by: 2, Postprocess upscaler: x2", images[2].Text["postprocessing"]);
    }

    [Fact]
    public async Task AnUpscalerNoWorkerOffersIsRefusedAtSubmitNamingWhatIsOffered()
    {
        var header = new JobHeader
        {
            Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7.5f, Upscaler = "x8" },
            Seeds = { 1 },
        };
        var error = await Assert.ThrowsAsync<RpcException>(() => Farm.SubmitAsync(header, [new PromptItem { Prompt = "a" }]));
        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
        Assert.Contains("upscaler 'x8' is not offered by any online worker of model 'tiny' (they offer: x2, x4)", error.Status.Detail);

        header.Params.Upscaler = "";
        header.Params.Hires = new Protocol.HiresFix { Scale = 2, Denoise = 0.5f, Upscaler = "x8" };
        error = await Assert.ThrowsAsync<RpcException>(() => Farm.SubmitAsync(header, [new PromptItem { Prompt = "a" }]));
        Assert.Contains("params.hires.upscaler: upscaler 'x8' is not offered", error.Status.Detail);
    }

    [Fact]
    public async Task HiresPastTheSizeLimitOrOnAnImg2ImgPromptIsRefused()
    {
        var header = new JobHeader
        {
            Params = new GenerationParams { Width = 1024, Height = 64, Steps = 2, GuidanceScale = 7.5f, Hires = new Protocol.HiresFix { Scale = 4, Denoise = 0.5f } },
            Seeds = { 1 },
        };
        var error = await Assert.ThrowsAsync<RpcException>(() => Farm.SubmitAsync(header, [new PromptItem { Prompt = "a" }]));
        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
        Assert.Contains("params.hires: 1024x64 at 4x renders 4096x256; each side must be at most 2048", error.Status.Detail);

        var init = Path.Combine(_directory, "init.png");
        await File.WriteAllBytesAsync(init, RenderFarm.Diffusion.Imaging.PngEncoder.Encode(new byte[64 * 64 * 3], 64, 64));
        var prompts = Path.Combine(_directory, "img2img.jsonl");
        await File.WriteAllLinesAsync(prompts, [$$"""{"prompt": "a", "init_image": "{{init}}"}"""]);
        var submit = await FarmAsync("submit", prompts, "--size", "64x64", "--steps", "2", "--hires", "2");
        Assert.Equal(2, submit.Exit);
        Assert.Contains("hires fix is for txt2img", submit.Err);
    }

    private static byte[] Pixels(byte[] png) => ImageDecoder.Decode(png, grey: false, long.MaxValue, "png").Pixels;
}
