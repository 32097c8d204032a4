namespace RenderFarm.Diffusion.Tests;

/// <summary><see cref="StableDiffusionPipeline.WarmUpAsync"/>: every component runs once, and a model that cannot render fails.</summary>
public class WarmUpTests(PresetModels models, TinyModelFixture tiny) : IClassFixture<PresetModels>, IClassFixture<TinyModelFixture>
{
    public static TheoryData<string> Presets => [.. PresetModels.Small];

    [Theory]
    [MemberData(nameof(Presets))]
    public async Task WarmingUpRunsEveryComponentOfTheDirectoryOnce(string preset)
    {
        var directory = models.Directory(preset);
        var components = Directory.GetDirectories(directory)
            .Where(d => File.Exists(Path.Combine(d, "model.onnx")))
            .Select(d => Path.GetFileName(d)!)
            // The ControlNet UNet beside a plain unet (tiny-control) loads with the first request that names a ControlNet.
            .Where(c => c != StableDiffusionPipeline.ControlNetUNetComponent)
            .Order(StringComparer.Ordinal);
        using var pipeline = StableDiffusionPipeline.Load(directory);
        await pipeline.WarmUpAsync();
        var statistics = pipeline.Statistics;
        Assert.Equal((1L, 1L), (statistics.Requests, statistics.Images));
        Assert.Equal(components, statistics.Components.Select(c => c.Component).Order(StringComparer.Ordinal));
        Assert.All(statistics.Components, c => Assert.Equal(1, c.Runs));
    }

    [Fact]
    public async Task AModelWhoseComponentsDoNotBelongTogetherLoadsButFailsItsWarmUp()
    {
        // The tiny model with tiny-sd2's text encoder: it loads, but its states are wider than the UNet takes.
        var directory = tiny.CopyModel();
        File.Copy(Path.Combine(models.Directory("tiny-sd2"), "text_encoder", "model.onnx"), Path.Combine(directory, "text_encoder", "model.onnx"), overwrite: true);
        using var pipeline = StableDiffusionPipeline.Load(directory);
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => pipeline.WarmUpAsync());
        Assert.Contains("do not belong together", error.Message);
    }
}
