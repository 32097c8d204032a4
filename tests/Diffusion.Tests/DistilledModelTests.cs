using RenderFarm.Diffusion.Imaging;
using RenderFarm.Diffusion.Schedulers;
using RenderFarm.GenerationRules;

namespace RenderFarm.Diffusion.Tests;

/// <summary>
/// Few-step distilled models: an LCM UNet (timestep_cond) takes the guidance as its embedding and never runs
/// classifier-free guidance; Turbo renders from its own scheduler config; guidance ≤ 1 skips CFG on any model.
/// </summary>
public class DistilledModelTests(PresetModels models) : IClassFixture<PresetModels>
{
    private static GenerationRequest Request(string model, string scheduler, int steps, float guidance, params ImagePrompt[] images) =>
        new(images, 64, 64, steps, guidance, scheduler, model);

    private static byte[] Pixels(GeneratedImage image) => PngPixels.Decode(image.Png);

    [Fact]
    public async Task AnLcmUNetRendersWithTheLcmSchedulerAndRecordsItsSettings()
    {
        var pipeline = models.Pipeline("tiny-lcm");
        Assert.True(pipeline.EmbedsGuidance);
        Assert.False(pipeline.UsesClassifierFreeGuidance(8.5f));
        var progress = new List<StepProgress>();
        var images = await pipeline.GenerateAsync(
            Request("tiny-lcm", "lcm", 4, 8.5f, new ImagePrompt("a boat", "", 1), new ImagePrompt("a tree", "", 2)), new SynchronousProgress(progress.Add));

        Assert.Equal([1, 2, 3, 4], progress.Select(p => p.Step));
        foreach (var image in images)
        {
            var text = PngMetadata.Read(image.Png).Text["parameters"];
            Assert.Contains("Steps: 4, Sampler: LCM, CFG scale: 8.5, ", text);
            Assert.True(Pixels(image).Distinct().Count() > 16, "the image should not be flat");
        }
        Assert.NotEqual(Pixels(images[0]), Pixels(images[1]));
    }

    [Fact]
    public async Task AnLcmUNetIgnoresTheNegativePromptBecauseItRunsNoClassifierFreeGuidance()
    {
        var pipeline = models.Pipeline("tiny-lcm");
        var plain = await pipeline.GenerateAsync(Request("tiny-lcm", "lcm", 2, 8.5f, new ImagePrompt("a boat", "", 5)));
        var negative = await pipeline.GenerateAsync(Request("tiny-lcm", "lcm", 2, 8.5f, new ImagePrompt("a boat", "stormy sea", 5)));
        Assert.Equal(Pixels(plain[0]), Pixels(negative[0]));
    }

    [Fact]
    public async Task TheGuidanceScaleReachesAnLcmUNetThroughItsEmbedding()
    {
        var pipeline = models.Pipeline("tiny-lcm");
        var low = await pipeline.GenerateAsync(Request("tiny-lcm", "lcm", 2, 2f, new ImagePrompt("a boat", "", 5)));
        var high = await pipeline.GenerateAsync(Request("tiny-lcm", "lcm", 2, 8.5f, new ImagePrompt("a boat", "", 5)));
        var again = await pipeline.GenerateAsync(Request("tiny-lcm", "lcm", 2, 8.5f, new ImagePrompt("a boat", "", 5)));
        Assert.NotEqual(Pixels(low[0]), Pixels(high[0]));
        Assert.Equal(Pixels(high[0]), Pixels(again[0]));
    }

    [Theory]
    [InlineData(0f)]
    [InlineData(1f)]
    public async Task GuidanceAtOrBelowOneSkipsClassifierFreeGuidanceOnAnOrdinaryUNet(float guidance)
    {
        var pipeline = models.Pipeline("tiny-turbo");
        Assert.False(pipeline.EmbedsGuidance);
        Assert.False(pipeline.UsesClassifierFreeGuidance(guidance));
        var plain = await pipeline.GenerateAsync(Request("tiny-turbo", "euler", 1, guidance, new ImagePrompt("a boat", "", 7)));
        var negative = await pipeline.GenerateAsync(Request("tiny-turbo", "euler", 1, guidance, new ImagePrompt("a boat", "stormy sea", 7)));
        Assert.Equal(Pixels(plain[0]), Pixels(negative[0]));
        // Control: above 1 the negative prompt is the other half of the CFG batch and changes the image.
        var guided = await pipeline.GenerateAsync(Request("tiny-turbo", "euler", 1, 7.5f, new ImagePrompt("a boat", "", 7)));
        var guidedNegative = await pipeline.GenerateAsync(Request("tiny-turbo", "euler", 1, 7.5f, new ImagePrompt("a boat", "stormy sea", 7)));
        Assert.NotEqual(Pixels(guided[0]), Pixels(guidedNegative[0]));
    }

    [Fact]
    public async Task TurboRendersOneStepFromTheLastTrainingTimestepAsItsTrailingSchedulerConfigSays()
    {
        var pipeline = models.Pipeline("tiny-turbo");
        Assert.Equal("trailing", pipeline.SchedulerConfig.TimestepSpacing);
        var euler = SchedulerFactory.Create("euler", pipeline.SchedulerConfig);
        euler.SetTimesteps(1);
        Assert.Equal([999.0], euler.Timesteps); // leading spacing would start at 1 (steps_offset) and barely denoise
        var images = await pipeline.GenerateAsync(Request("tiny-turbo", "euler", 1, 0f, new ImagePrompt("a cat", "", 3)));
        Assert.Contains("Steps: 1, Sampler: Euler, CFG scale: 0, ", PngMetadata.Read(images[0].Png).Text["parameters"]);
    }

    [Theory]
    [InlineData("tiny-lcm", "lcm", 4, 8.5f, SamplingDefaultsRule.LcmKind)]
    [InlineData("tiny-turbo", "euler", 1, 0f, SamplingDefaultsRule.TurboKind)]
    public void ADistilledModelDirectoryDeclaresItsSamplingDefaults(string preset, string scheduler, int steps, float guidance, string kind)
    {
        Assert.Equal(new SamplingDefaultsRule.Defaults(scheduler, steps, guidance, kind), ModelSampling.ReadDefaults(models.Directory(preset)));
    }

    [Theory]
    [InlineData("tiny")]
    [InlineData("tiny-sdxl")]
    public void AnOrdinaryModelDirectoryHasNoSamplingDefaults(string preset) =>
        Assert.Null(ModelSampling.ReadDefaults(models.Directory(preset)));

    [Theory]
    [InlineData("LCMScheduler", "leading", "epsilon", false, "lcm-scheduler")]
    [InlineData("EulerDiscreteScheduler", "trailing", "epsilon", false, "turbo")]
    [InlineData("DDIMScheduler", "trailing", "v_prediction", false, null)] // zero-terminal-SNR v-prediction models also trail
    [InlineData("EulerDiscreteScheduler", "leading", "epsilon", true, "lcm")]
    [InlineData("PNDMScheduler", "leading", "epsilon", false, null)]
    public void TheRuleRecognisesDistilledModelsByTheirConfigs(string schedulerClass, string spacing, string prediction, bool embedsGuidance, string? kind) =>
        Assert.Equal(kind, SamplingDefaultsRule.For(schedulerClass, spacing, prediction, embedsGuidance)?.Kind);
}
