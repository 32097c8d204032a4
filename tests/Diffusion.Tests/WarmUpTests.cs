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

    [Fact]
    public async Task ATinyDecoderThatDoesNotScaleLikeTheVaeFailsTheWarmUp()
    {
        // A TAESD decoder with two stages (×2) where the VAE scales by 8: previews would be the wrong size.
        var directory = tiny.CopyModel();
        var decoder = Path.Combine(directory, StableDiffusionPipeline.PreviewDecoderComponent);
        Directory.CreateDirectory(decoder);
        var graph = ModelBuilder.Components.TinyDecoderBuilder.Build(new ModelBuilder.Components.TinyDecoderConfig([8, 8], [1, 1]), new ModelBuilder.Graph.GraphOptions());
        ModelBuilder.OnnxModelWriter.Write(graph, Path.Combine(decoder, "model.onnx"), seed: 1);
        using var pipeline = StableDiffusionPipeline.Load(directory);
        Assert.True(pipeline.DecodesPreviews);
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => pipeline.WarmUpAsync());
        Assert.Contains("tiny autoencoder decoder made 16x16 previews", error.Message);
    }
}
