using RenderFarm.Diffusion.ControlNets;
using RenderFarm.Diffusion.Imaging;
using RenderFarm.ModelBuilder;

namespace RenderFarm.Diffusion.Tests;

/// <summary>
/// ControlNet through the pipeline on the tiny-control preset (unet/ plain, controlnet/ the residual UNet with the same
/// weights) and two tiny ControlNets. What "scale 0 equals no ControlNet" means here exactly: a request whose
/// ControlNet has weight 0 runs the residual UNet (controlnet/model.onnx) fed the ControlNet's residuals times 0, and
/// its pixels equal those of the same request without a ControlNet, which runs the plain unet/model.onnx.
/// </summary>
public sealed class ControlNetTests(ControlNetTests.Models models) : IClassFixture<ControlNetTests.Models>
{
    public sealed class Models : IDisposable
    {
        public Models()
        {
            ModelPresets.Write("tiny-control", ModelDirectory);
            ControlNetWriter.Write(ModelPresets.Get("tiny"), Path.Combine(Root, "controlnets", "canny"), seed: 0);
            ControlNetWriter.Write(ModelPresets.Get("tiny"), Path.Combine(Root, "controlnets", "depth"), seed: 1);
            Library = new ControlNetLibrary(Path.Combine(Root, "controlnets"));
            Pipeline = StableDiffusionPipeline.Load(ModelDirectory, new DiffusionOptions(), new ModelExtensions { ControlNets = Library });
        }

        public string Root { get; } = Directory.CreateTempSubdirectory("rf-controlnet-").FullName;

        public string ModelDirectory => Path.Combine(Root, "model");

        public ControlNetLibrary Library { get; }

        public StableDiffusionPipeline Pipeline { get; }

        public void Dispose()
        {
            Pipeline.Dispose();
            try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
        }
    }

    private static readonly byte[] Edges = TestImages.Gradient(48, 40, shift: 60); // another size: resized to 64×64

    private static GenerationRequest Request(params ControlNetUnit[] units) =>
        new GenerationRequest([new ImagePrompt("a lighthouse", "blurry", 5), new ImagePrompt("a harbour", "", 6)], 64, 64, 4, 7.5f, "euler", "tiny-control")
        {
            ControlNets = units,
        };

    private async Task<byte[][]> Pixels(GenerationRequest request, StableDiffusionPipeline? pipeline = null) =>
        (await (pipeline ?? models.Pipeline).GenerateAsync(request)).Select(i => PngPixels.Decode(i.Png)).ToArray();

    [Fact]
    public async Task AControlNetAtScaleZeroRendersExactlyTheImagesOfNoControlNet()
    {
        var plain = await Pixels(Request());
        var zero = await Pixels(Request(new ControlNetUnit("canny", Edges, 0f)));
        Assert.Equal(plain, zero);
    }

    [Fact]
    public async Task AControlNetSteersTheImagesAndTwoControlNetsAddUp()
    {
        var plain = await Pixels(Request());
        var canny = await Pixels(Request(new ControlNetUnit("canny", Edges, 1f)));
        var both = await Pixels(Request(new ControlNetUnit("canny", Edges, 1f), new ControlNetUnit("depth", Edges, 1f)));
        Assert.NotEqual(plain[0], canny[0]);
        Assert.NotEqual(canny[0], both[0]);
        // Residuals add: the same ControlNet twice at half weight sums to exactly its residuals at full weight (halving
        // and doubling are exact in binary floating point).
        var halves = await Pixels(Request(new ControlNetUnit("canny", Edges, 0.5f), new ControlNetUnit("canny", Edges, 0.5f)));
        Assert.Equal(canny, halves);
    }

    [Fact]
    public async Task TheControlImageShapesTheResult()
    {
        var a = await Pixels(Request(new ControlNetUnit("canny", Edges, 1f)));
        var b = await Pixels(Request(new ControlNetUnit("canny", TestImages.Jpeg(64, 64), 1f)));
        Assert.NotEqual(a[0], b[0]);
    }

    [Fact]
    public async Task EachImageRendersAsItDoesAloneInABatch()
    {
        var unit = new ControlNetUnit("canny", Edges, 0.8f);
        var batch = await Pixels(Request(unit));
        var alone = await Pixels(new GenerationRequest([new ImagePrompt("a harbour", "", 6)], 64, 64, 4, 7.5f, "euler", "tiny-control") { ControlNets = [unit] });
        Assert.Equal(batch[1], alone[0]);
    }

    [Fact]
    public async Task ThePngParametersRecordEachControlNetUnitAsA1111Does()
    {
        var images = await models.Pipeline.GenerateAsync(Request(new ControlNetUnit("canny", Edges, 1f, "canny"), new ControlNetUnit("depth", Edges, 0.75f)));
        var parameters = PngMetadata.Read(images[0].Png).Text["parameters"];
        Assert.Contains("ControlNet 0: \"Module: canny, Model: canny, Weight: 1.0, Resize Mode: Just Resize, Guidance Start: 0.0, Guidance End: 1.0, Control Mode: Balanced\"", parameters);
        Assert.Contains("ControlNet 1: \"Module: none, Model: depth, Weight: 0.75,", parameters);
    }

    [Fact]
    public async Task AUNetThatTakesResidualsItselfRendersWithoutAControlNetExactlyAsThePlainUNet()
    {
        // Amblyopius' layout: unet/ itself is the residual UNet; requests without a ControlNet feed it zeros.
        var copy = Path.Combine(models.Root, "residual-unet");
        CopyDirectory(models.ModelDirectory, copy);
        Directory.Delete(Path.Combine(copy, "unet"), recursive: true);
        Directory.Move(Path.Combine(copy, "controlnet"), Path.Combine(copy, "unet"));
        using var pipeline = StableDiffusionPipeline.Load(copy, new DiffusionOptions(), new ModelExtensions { ControlNets = models.Library });
        Assert.True(pipeline.SupportsControlNets);
        Assert.Equal(await Pixels(Request()), await Pixels(Request(), pipeline));
        Assert.Equal(await Pixels(Request(new ControlNetUnit("canny", Edges, 1f))), await Pixels(Request(new ControlNetUnit("canny", Edges, 1f)), pipeline));
    }

    [Fact]
    public void RequestsNamingAnUnknownControlNetOrAnUndecodableImageOrAModelWithoutResidualsAreRefused()
    {
        var unknown = Assert.Throws<ArgumentException>(() => { _ = models.Pipeline.GenerateAsync(Request(new ControlNetUnit("pose", Edges, 1f))); });
        Assert.Contains("Unknown ControlNet 'pose'; offered: canny, depth", unknown.Message);
        var nan = Assert.Throws<ArgumentException>(() => { _ = models.Pipeline.GenerateAsync(Request(new ControlNetUnit("canny", Edges, float.NaN))); });
        Assert.Contains("finite", nan.Message);

        var plainDirectory = Path.Combine(models.Root, "plain");
        if (!Directory.Exists(plainDirectory)) ModelPresets.Write("tiny", plainDirectory);
        using var plain = StableDiffusionPipeline.Load(plainDirectory, new DiffusionOptions(), new ModelExtensions { ControlNets = models.Library });
        Assert.False(plain.SupportsControlNets);
        Assert.Empty(plain.ControlNetNames);
        Assert.Throws<ArgumentException>(() => { _ = plain.GenerateAsync(Request(new ControlNetUnit("canny", Edges, 1f))); });
    }

    [Fact]
    public async Task AnUndecodableControlImageFailsAsAnInvalidRequest()
    {
        var broken = Edges[..(Edges.Length / 2)];
        var e = await Assert.ThrowsAsync<ArgumentException>(() => models.Pipeline.GenerateAsync(Request(new ControlNetUnit("canny", broken, 1f))));
        Assert.Contains("control image of ControlNet 0 (canny)", e.Message);
    }

    private static void CopyDirectory(string source, string target)
    {
        foreach (var file in Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories))
        {
            var destination = Path.Combine(target, Path.GetRelativePath(source, file));
            Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
            File.Copy(file, destination);
        }
    }
}
