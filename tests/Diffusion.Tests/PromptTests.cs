using RenderFarm.Diffusion.Imaging;

using RenderFarm.Diffusion.Prompts;

namespace RenderFarm.Diffusion.Tests;

public class PromptParserTests
{
    private static (string, float)[] Parse(string prompt) => PromptParser.Parse(prompt).Select(r => (r.Text, r.Weight)).ToArray();

    [Fact]
    public void PlainTextHasWeightOne() => Assert.Equal([("a red fox", 1f)], Parse("a red fox"));

    [Fact]
    public void RoundBracketsMultiplyByOnePointOne() =>
        Assert.Equal([("a ", 1f), ("red", 1.1f), (" fox", 1f)], Parse("a (red) fox"));

    [Fact]
    public void SquareBracketsDivideByOnePointOne() =>
        Assert.Equal([("a ", 1f), ("red", (float)(1 / 1.1)), (" fox", 1f)], Parse("a [red] fox"));

    [Fact]
    public void AnExplicitWeightReplacesTheDefaultMultiplier() =>
        Assert.Equal([("a ", 1f), ("red", 1.3f), (" fox", 1f)], Parse("a (red:1.3) fox"));

    [Fact]
    public void NestedBracketsMultiply() =>
        Assert.Equal([("a ", 1f), ("red", (float)(1.1 * 1.1)), (" fox", 1.1f)], Parse("a ((red) fox)"));

    [Fact]
    public void EscapedBracketsAreLiteralText() => Assert.Equal([(@"a (red) fox", 1f)], Parse(@"a \(red\) fox"));

    [Fact]
    public void AnUnclosedBracketWeighsTheRestOfThePrompt() => Assert.Equal([("a ", 1f), ("red fox", 1.1f)], Parse("a (red fox"));

    [Fact]
    public void AColonOutsideAWeightIsText() => Assert.Equal([("style: oil", 1f)], Parse("style: oil"));

    [Fact]
    public void AnEmptyPromptIsOneEmptyRun() => Assert.Equal([("", 1f)], Parse(""));
}

public class EmbeddingWeightsTests
{
    [Fact]
    public void WeightingScalesTokensThenRestoresTheWindowMean()
    {
        float[] states = [1, 2, 3, 4]; // 2 tokens × 2 channels
        EmbeddingWeights.Apply(states, [1f, 2f], 2);
        // z·w = [1, 2, 6, 8], mean 4.25 → ×(2.5 / 4.25)
        float k = 2.5f / 4.25f;
        Assert.Equal([1 * k, 2 * k, 6 * k, 8 * k], states, new FloatComparer(1e-6f));
        Assert.Equal(2.5f, states.Average(), 5);
    }

    [Fact]
    public void UnitWeightsLeaveTheStatesUnchanged()
    {
        float[] states = [0.1f, -0.7f, 3.3f, 0.25f];
        var before = (float[])states.Clone();
        EmbeddingWeights.Apply(states, [1f, 1f], 2);
        Assert.Equal(before, states);
    }

    private sealed class FloatComparer(float tolerance) : IEqualityComparer<float>
    {
        public bool Equals(float x, float y) => Math.Abs(x - y) <= tolerance;
        public int GetHashCode(float obj) => 0;
    }
}

public class PromptRenderingTests(PresetModels models) : IClassFixture<PresetModels>
{
    private static GenerationRequest Request(string prompt, string negative = "") =>
        new([new ImagePrompt(prompt, negative, 5)], 64, 64, 3, 7.5f, "euler", "tiny");

    private Task<IReadOnlyList<GeneratedImage>> Render(GenerationRequest request, string preset = "tiny") =>
        models.Pipeline(preset).GenerateAsync(request);

    private static string LongPrompt(int words) => string.Join(" ", Enumerable.Range(0, words).Select(i => i % 2 == 0 ? "red fox" : "snow"));

    [Fact]
    public async Task AWeightOfOneRendersExactlyLikeThePlainPrompt()
    {
        var plain = await Render(Request("a red fox in the snow"));
        var weighted = await Render(Request("a (red fox:1.0) in the snow"));
        Assert.Equal(PngPixels.Decode(plain[0].Png), PngPixels.Decode(weighted[0].Png));
    }

    [Fact]
    public async Task EmphasisChangesTheImage()
    {
        var plain = await Render(Request("a red fox in the snow"));
        var weighted = await Render(Request("a (red fox:1.6) in the snow"));
        Assert.NotEqual(PngPixels.Decode(plain[0].Png), PngPixels.Decode(weighted[0].Png));
    }

    [Fact]
    public async Task TokensPastTheFirstWindowStillChangeTheImage()
    {
        var prefix = LongPrompt(100); // > 75 tokens
        var a = await Render(Request(prefix + " lighthouse"));
        var b = await Render(Request(prefix + " banana"));
        Assert.NotEqual(PngPixels.Decode(a[0].Png), PngPixels.Decode(b[0].Png));
    }

    [Fact]
    public async Task ALongPromptRendersWithAShortNegativeAndBatchMates()
    {
        var request = new GenerationRequest([new ImagePrompt(LongPrompt(120), "blurry", 1), new ImagePrompt("a cat", "", 2)], 64, 64, 2, 7.5f);
        var images = await Render(request);
        Assert.Equal(2, images.Count);
    }

    [Fact]
    public async Task ClipSkipWithoutHiddenStateOutputsIsAClearError()
    {
        var ex = await Assert.ThrowsAnyAsync<ArgumentException>(() => Render(Request("a cat") with { ClipSkip = 2 }));
        Assert.Equal("ClipSkip", ex.ParamName);
        Assert.Contains("hidden_states", ex.Message);
    }

    [Fact]
    public async Task ClipSkipBelowOneIsRejected()
    {
        var ex = await Assert.ThrowsAnyAsync<ArgumentException>(() => Render(Request("a cat") with { ClipSkip = 0 }));
        Assert.Equal("ClipSkip", ex.ParamName);
    }

    [Fact]
    public async Task ClipSkipTwoUsesAnEarlierLayerWhereTheExportHasThem()
    {
        var request = Request("a red fox") with { ModelName = "tiny-sdxl" };
        var last = await Render(request, "tiny-sdxl");
        var skipped = await Render(request with { ClipSkip = 2 }, "tiny-sdxl");
        Assert.NotEqual(PngPixels.Decode(last[0].Png), PngPixels.Decode(skipped[0].Png));
        Assert.Contains("Clip skip: 2", PngMetadata.Read(skipped[0].Png).Text["parameters"]);
        var tooFar = await Assert.ThrowsAnyAsync<ArgumentException>(() => Render(request with { ClipSkip = 5 }, "tiny-sdxl"));
        Assert.Equal("ClipSkip", tooFar.ParamName);
    }

    [Fact]
    public void TheFittedFinalLayerNormReproducesLastHiddenState()
    {
        var directory = models.Directory("tiny-sdxl");
        using var encoder = new Models.TextEncoder(Models.OnnxComponent.Open(directory, "text_encoder", new DiffusionOptions()));
        var tokenizer = Tokenization.ClipTokenizer.Load(Path.Combine(directory, "tokenizer"));
        using var run = new Microsoft.ML.OnnxRuntime.RunOptions();
        string[] outputs = [encoder.HiddenStateNames[^1], encoder.LastHiddenName];
        var fitOn = encoder.Run(tokenizer.Encode(""), 1, run, outputs);
        var norm = Models.FinalLayerNorm.Fit(fitOn[0].Values, fitOn[1].Values, (int)fitOn[0].RowShape[^1], 1e-5);
        var other = encoder.Run(tokenizer.Encode("a lighthouse on a cliff at dusk"), 1, run, outputs);
        var states = (float[])other[0].Values.Clone();
        norm.Apply(states);
        for (int i = 0; i < states.Length; i++)
        {
            Assert.True(Math.Abs(states[i] - other[1].Values[i]) < 1e-3f, $"element {i}: {states[i]} vs {other[1].Values[i]}");
        }
    }
}
