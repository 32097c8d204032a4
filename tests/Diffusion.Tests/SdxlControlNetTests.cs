using RenderFarm.Diffusion.ControlNets;

namespace RenderFarm.Diffusion.Tests;

/// <summary>
/// SDXL ControlNets through the pipeline: tiny-sdxl-control (unet/ plain, controlnet/ the SDXL UNet that takes
/// residuals, same weights) and a tiny SDXL ControlNet, which also takes the UNet's text_embeds and time_ids. Weight 0
/// rendering exactly the plain unet's images also holds the residual UNet at zero residuals to the plain one.
/// </summary>
public sealed class SdxlControlNetTests(SdxlControlNetTests.Models models) : IClassFixture<SdxlControlNetTests.Models>
{
    public sealed class Models() : ControlNetModels("tiny-sdxl-control", "rf-sdxl-controlnet-", ("xl-canny", "tiny-sdxl", 0), ("sd-canny", "tiny", 0));

    private static readonly byte[] Edges = TestImages.Gradient(48, 40, shift: 60);

    private static GenerationRequest Request(params ControlNetUnit[] units) =>
        new GenerationRequest([new ImagePrompt("a lighthouse", "blurry", 5), new ImagePrompt("a harbour", "", 6)], 64, 64, 3, 5f, "euler", "tiny-sdxl")
        {
            ControlNets = units,
        };

    private async Task<byte[][]> Pixels(GenerationRequest request) =>
        (await models.Pipeline.GenerateAsync(request)).Select(i => PngPixels.Decode(i.Png)).ToArray();

    [Fact]
    public async Task WithTheStepOnTheDeviceAnSdxlControlNetReadsItsAddedConditionsThereToo()
    {
        using var device = StableDiffusionPipeline.Load(models.ModelDirectory, new DiffusionOptions { StepOnDevice = true },
            new ModelExtensions { ControlNets = models.Library });
        var request = Request(new ControlNetUnit("xl-canny", Edges, 0.8f));

        var expected = await models.Pipeline.RenderLatentsAsync(request);
        var actual = await device.RenderLatentsAsync(request);

        Assert.Equal(2 * 3, device.Statistics.DeviceGraphs!.Single(g => g.Component == "controlnet_sum").Runs); // per image (the CPU's batching), per step
        double scale = expected.Max(Math.Abs);
        Assert.All(expected.Zip(actual), p => Assert.True(Math.Abs(p.First - p.Second) <= 1e-3 * scale * Math.Max(1, Math.Abs(p.First)), $"{p.First} vs {p.Second}"));
    }

    [Fact]
    public async Task AnSdxlControlNetSteersAndAtWeightZeroOrAnEmptyWindowRendersExactlyNoControlNet()
    {
        Assert.True(models.Pipeline.SupportsControlNets);
        var plain = await Pixels(Request());
        Assert.Equal(plain, await Pixels(Request(new ControlNetUnit("xl-canny", Edges, 0f))));
        Assert.Equal(plain, await Pixels(Request(new ControlNetUnit("xl-canny", Edges, 1f, GuidanceStart: 0.5, GuidanceEnd: 0.5))));
        var steered = await Pixels(Request(new ControlNetUnit("xl-canny", Edges, 1f)));
        Assert.NotEqual(plain[0], steered[0]);
        var guess = await Pixels(Request(new ControlNetUnit("xl-canny", Edges, 1f, GuessMode: true)));
        Assert.NotEqual(steered[0], guess[0]);
    }

    [Fact]
    public async Task AnSd15ControlNetOnAnSdxlModelIsRefusedNamingTheArchitecture()
    {
        var e = await Assert.ThrowsAsync<ArgumentException>(() => models.Pipeline.GenerateAsync(Request(new ControlNetUnit("sd-canny", Edges, 1f))));
        Assert.Contains("another architecture", e.Message);
    }
}
