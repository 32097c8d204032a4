using System.Text.Json;
using Google.Protobuf;
using Grpc.Core;
using RenderFarm.Client;
using RenderFarm.Diffusion;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Imaging;
using RenderFarm.ModelBuilder;
using RenderFarm.Protocol;
using RenderFarm.Worker;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// ControlNet through the farm: `farm submit` with a control column and --control, a real coordinator, Redis and a worker
/// holding the tiny-control model (unet/ plain, controlnet/ the residual UNet) and two tiny ControlNets in its
/// Farm:ControlNets folder. A farm of its own, so the shared farm's workers stay as they are.
/// </summary>
public sealed class ControlNetTests(ControlNetTests.ControlFarm fixture) : IClassFixture<ControlNetTests.ControlFarm>
{
    private const string Model = "tiny-control";

    public sealed class ControlFarm : IAsyncLifetime
    {
        public FarmCluster Cluster { get; private set; } = null!;

        public string ModelDirectory => Path.Combine(Cluster.Root, "control-model");

        public string ControlNets => Path.Combine(Cluster.Root, "controlnets");

        public string Files => Path.Combine(Cluster.Root, "inputs");

        public async Task InitializeAsync()
        {
            Cluster = await FarmCluster.StartAsync(workers: 0);
            ModelPresets.Write(Model, ModelDirectory);
            // What `modelbuilder controlnet tiny --out controlnets/canny` (and --seed 1 for depth) writes.
            ControlNetWriter.Write(ModelPresets.Get("tiny"), Path.Combine(ControlNets, "canny"), seed: 0);
            ControlNetWriter.Write(ModelPresets.Get("tiny"), Path.Combine(ControlNets, "depth"), seed: 1);
            // An SDXL ControlNet: offered, but not for the SD model.
            ControlNetWriter.Write(ModelPresets.Get("tiny-sdxl"), Path.Combine(ControlNets, "xl"), seed: 0);
            Directory.CreateDirectory(Files);
            await File.WriteAllBytesAsync(Path.Combine(Files, "edges.png"), Shapes(48, 40));
            await Cluster.StartWorkerAsync("control-worker", s =>
            {
                s.Remove($"Farm:Models:{FarmCluster.Model}");
                s[$"Farm:Models:{Model}"] = ModelDirectory;
                s["Farm:ControlNets"] = ControlNets;
            });
            await Cluster.Jobs.WaitForWorkerAsync("control-worker", w => w.ControlNets.Count == 3);
        }

        public async Task DisposeAsync() => await Cluster.DisposeAsync();
    }

    private FarmCluster Farm => fixture.Cluster;

    /// <summary>A white rectangle and a grey disc on black: something with edges.</summary>
    private static byte[] Shapes(int width, int height)
    {
        var rgb = new byte[width * height * 3];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                byte v = x is > 8 and < 24 && y is > 6 and < 30 ? (byte)255 : (x - 34) * (x - 34) + (y - 20) * (y - 20) < 64 ? (byte)140 : (byte)0;
                rgb[(y * width + x) * 3] = rgb[(y * width + x) * 3 + 1] = rgb[(y * width + x) * 3 + 2] = v;
            }
        return PngWriter.Encode(new DecodedImage(rgb, width, height, 3));
    }

    private async Task<(int Exit, string Out, string Err)> FarmAsync(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var exit = await FarmCli.RunAsync(["--coordinator", Farm.CoordinatorUrl, .. args], stdout, stderr, CancellationToken.None);
        return (exit, stdout.ToString(), stderr.ToString());
    }

    private static byte[] Pixels(string png) => ImageDecoder.Decode(File.ReadAllBytes(png), grey: false, long.MaxValue, "png").Pixels;

    [Fact]
    public async Task ControlColumnsRenderAsTheWorkersPipelineDoesScaleZeroIsNoControlNetAndUnitsAddUp()
    {
        var prompts = Path.Combine(fixture.Files, "control.jsonl");
        string Line(object? control) => JsonSerializer.Serialize(new Dictionary<string, object?> { ["prompt"] = "a lighthouse at dusk", ["control"] = control });
        await File.WriteAllLinesAsync(prompts,
        [
            """{"prompt": "a lighthouse at dusk"}""",
            Line("canny:edges.png:0"),
            Line("canny:edges.png:1"),
            Line(new[] { "canny:edges.png:0.5", "canny:edges.png:0.5" }),
            Line("depth:edges.png:1:canny; canny:edges.png:0.75"),
            Line("canny:edges.png:1:0.5-0.5"),
            Line(new[] { "canny:edges.png:1:0-0.5", "canny:edges.png:1:0.5-1" }),
            Line("canny:edges.png:0.8:0.25-1:guess"),
        ]);
        var output = Path.Combine(fixture.Files, "out-columns");

        var submit = await FarmAsync("submit", prompts, "--model", Model, "--size", "64x64", "--steps", "4", "--seeds", "5", "--watch", "--out", output);

        Assert.True(submit.Exit == 0, submit.Err);
        var files = Directory.GetFiles(output, "*.png").Order().ToArray();
        Assert.Equal(8, files.Length);
        var pixels = files.Select(Pixels).ToArray();
        Assert.Equal(pixels[0], pixels[1]);        // weight 0: exactly no ControlNet
        Assert.NotEqual(pixels[0], pixels[2]);     // weight 1 steers
        Assert.Equal(pixels[2], pixels[3]);        // two units add up: 0.5 + 0.5 is exactly 1
        Assert.NotEqual(pixels[2], pixels[4]);
        Assert.Equal(pixels[0], pixels[5]);        // a guidance window of no step: exactly no ControlNet
        Assert.Equal(pixels[2], pixels[6]);        // two windows that split the steps: exactly the full window

        // The worker's render equals the same request on a pipeline of the worker's settings, outside the farm.
        using var pipeline = StableDiffusionPipeline.Load(fixture.ModelDirectory, new WorkerOptions().ToDiffusionOptions(),
            new ModelExtensions { ControlNets = new Diffusion.ControlNets.ControlNetLibrary(fixture.ControlNets) });
        var direct = await pipeline.GenerateAsync(new GenerationRequest([new ImagePrompt("a lighthouse at dusk", "", 5)], 64, 64, 4, 7.5f, "euler", Model)
        {
            ControlNets = [new Diffusion.ControlNets.ControlNetUnit("canny", File.ReadAllBytes(Path.Combine(fixture.Files, "edges.png")), 1f)],
        });
        Assert.Equal(ImageDecoder.Decode(direct[0].Png, false, long.MaxValue, "png").Pixels, pixels[2]);

        var parameters = PngMetadata.Read(File.ReadAllBytes(files[4])).Text["parameters"];
        Assert.Contains("ControlNet 0: \"Module: canny, Model: depth, Weight: 1.0, Resize Mode: Just Resize,", parameters);
        Assert.Contains("ControlNet 1: \"Module: none, Model: canny, Weight: 0.75,", parameters);
        Assert.DoesNotContain("ControlNet", PngMetadata.Read(File.ReadAllBytes(files[0])).Text["parameters"]);
        Assert.Contains("ControlNet 0: \"Module: none, Model: canny, Weight: 0.8, Resize Mode: Just Resize, Guidance Start: 0.25, Guidance End: 1.0, " +
            "Control Mode: ControlNet is more important\"", PngMetadata.Read(File.ReadAllBytes(files[7])).Text["parameters"]);
    }

    [Fact]
    public async Task TheControlFlagAppliesToEveryPromptOfATextFileAndItsImageIsSentOnce()
    {
        var prompts = Path.Combine(fixture.Files, "prompts.txt");
        await File.WriteAllLinesAsync(prompts, ["a castle", "a ship", "a fox"]);
        var edges = Path.Combine(fixture.Files, "edges.png");

        var dryRun = await FarmAsync("submit", prompts, "--model", Model, "--control", $"canny:{edges}:0.8", "--dry-run");
        Assert.True(dryRun.Exit == 0, dryRun.Err);
        Assert.Contains("inputs:    1 distinct", dryRun.Out);

        var output = Path.Combine(fixture.Files, "out-flag");
        var submit = await FarmAsync("submit", prompts, "--model", Model, "--size", "64x64", "--steps", "3", "--seeds", "2",
            "--control", $"canny:{edges}:0.8", "--watch", "--out", output);

        Assert.True(submit.Exit == 0, submit.Err);
        var files = Directory.GetFiles(output, "*.png");
        Assert.Equal(3, files.Length);
        Assert.All(files, f => Assert.Contains("ControlNet 0: \"Module: none, Model: canny, Weight: 0.8,", PngMetadata.Read(File.ReadAllBytes(f)).Text["parameters"]));
    }

    [Fact]
    public async Task AControlNetNoWorkerOffersOrAControlImageThatDoesNotDecodeIsRefusedAtSubmit()
    {
        var listed = await Farm.Jobs.ListModelsAsync(new ListModelsRequest());
        Assert.Equal(["canny", "depth"], listed.Models.Single(m => m.Name == Model).ControlNets); // not xl, an SDXL ControlNet

        var header = new JobHeader
        {
            Params = new GenerationParams { Model = Model, Width = 64, Height = 64, Steps = 2, GuidanceScale = 7.5f, Scheduler = "euler" },
            Seeds = { 1 },
        };
        var image = File.ReadAllBytes(Path.Combine(fixture.Files, "edges.png"));
        SubmitJobRequest Input(string name, byte[] bytes) => new() { InputImage = new InputImage { Name = name, Data = ByteString.CopyFrom(bytes) } };
        SubmitJobRequest Prompt(string model, string imageName) =>
            new() { Prompt = new PromptItem { Prompt = "a lighthouse", ControlNets = { new Protocol.ControlNetUnit { Model = model, Image = imageName, Weight = 1 } } } };

        var unknown = await Assert.ThrowsAsync<RpcException>(() => Farm.SubmitItemsAsync(header, [Input("edges", image), Prompt("pose", "edges")]));
        Assert.Equal(StatusCode.InvalidArgument, unknown.StatusCode);
        Assert.Contains("ControlNet 'pose' is not offered by any online worker of model 'tiny-control' (they offer: canny, depth, xl)", unknown.Status.Detail);
        var otherFamily = await Assert.ThrowsAsync<RpcException>(() => Farm.SubmitItemsAsync(header, [Input("edges", image), Prompt("xl", "edges")]));
        Assert.Contains("ControlNet 'xl' is offered, but not for model 'tiny-control' on the workers that offer it: it is made for another model family",
            otherFamily.Status.Detail);

        var broken = await Assert.ThrowsAsync<RpcException>(() => Farm.SubmitItemsAsync(header, [Input("cut", image[..(image.Length / 2)]), Prompt("canny", "cut")]));
        Assert.Equal(StatusCode.InvalidArgument, broken.StatusCode);
        Assert.Contains("prompts[0].control_nets[0].image 'cut' is not a decodable PNG or JPEG", broken.Status.Detail);

        var unsent = await Assert.ThrowsAsync<RpcException>(() => Farm.SubmitItemsAsync(header, [Prompt("canny", "nothing")]));
        Assert.Contains("prompts[0].control_nets[0].image 'nothing' names no input_image sent before it", unsent.Status.Detail);

        var backwards = Prompt("canny", "edges");
        backwards.Prompt.ControlNets[0].GuidanceStart = 0.8;
        backwards.Prompt.ControlNets[0].GuidanceEnd = 0.2;
        var window = await Assert.ThrowsAsync<RpcException>(() => Farm.SubmitItemsAsync(header, [Input("edges", image), backwards]));
        Assert.Equal(StatusCode.InvalidArgument, window.StatusCode);
        Assert.Contains("prompts[0].control_nets[0]: the guidance start 0.8 is after its end 0.2", window.Status.Detail);
    }
}
