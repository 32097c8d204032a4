using RenderFarm.GenerationRules;
using Microsoft.ML.OnnxRuntime;
using RenderFarm.Diffusion.Lora;
using RenderFarm.Diffusion.Weights;
using RenderFarm.ModelBuilder;

namespace RenderFarm.Diffusion.Tests;

/// <summary>
/// ONNX Runtime applies replaced initializers after its graph optimisations; these cases would keep the model file's own
/// weights if the pipeline did not switch off the optimisers that read them first.
/// </summary>
public class LoraSessionTests(LoraFixture fixture) : IClassFixture<LoraFixture>
{
    private static readonly GenerationRequest Request = new([new ImagePrompt("a windmill", "", 8)], 64, 64, 3, 7.5f, "euler", "m");

    [Fact]
    public async Task Float16WeightsCastToFloat32AreReplacedNotConstantFolded()
    {
        // tiny-fp16 stores float16 weights that a Cast widens for float32 maths; constant folding would bake the Cast.
        var set = LoraSet.Of(new LoraWeight("detail", 1.2f));
        var (variant, merged) = await Render("tiny-fp16", set, new DiffusionOptions());
        Assert.Equal(PngPixels.Decode(merged), PngPixels.Decode(variant));
    }

    [Fact]
    public async Task ConvWeightsTakeEffectUnderOrtEnableAll()
    {
        // ORT_ENABLE_ALL copies conv weights into its NCHWc layout before replaced initializers apply.
        var options = new DiffusionOptions { GraphOptimization = GraphOptimizationLevel.ORT_ENABLE_ALL };
        var set = LoraSet.Of(new LoraWeight("convs", 1f));
        var (variant, merged) = await Render("tiny", set, options);
        using var plainPipeline = StableDiffusionPipeline.Load(fixture.Model("tiny"), options);
        var plain = PngPixels.Decode((await plainPipeline.GenerateAsync(Request))[0].Png);
        var (a, b) = (PngPixels.Decode(variant), PngPixels.Decode(merged));
        // The variant runs without the NCHWc rewrite, so its kernels (not its weights) may differ from the merged
        // model's by a level; far from the plain model's image.
        Assert.True(a.Zip(b).Max(p => Math.Abs(p.First - p.Second)) <= 2);
        Assert.True(a.Zip(plain).Count(p => p.First != p.Second) > a.Length / 4);
    }

    private async Task<(byte[] Variant, byte[] Merged)> Render(string preset, LoraSet set, DiffusionOptions options)
    {
        var directory = fixture.Model(preset);
        var locators = new[] { "unet", "text_encoder" }.ToDictionary(c => c, c => new WeightLocator(OnnxGraph.Read(Path.Combine(directory, c, "model.onnx"))));
        var weights = LoraMerge.Compute(set, fixture.Loras.Get, locators, xl: false);
        var mergedDirectory = Path.Combine(fixture.Root, $"merged-{preset}-{set.Key.GetHashCode():x}");
        ModelPresets.Write(preset, mergedDirectory, new ModelWriteOptions
        {
            Force = true,
            ReplaceWeights = (component, init) => weights.GetValueOrDefault(component)?.FirstOrDefault(w => w.Initializer.Name == init.Name)?.ToArray(),
        });
        using var merged = StableDiffusionPipeline.Load(mergedDirectory, options);
        using var pipeline = StableDiffusionPipeline.Load(directory, options, new ModelExtensions { Loras = fixture.Loras });
        var expected = await merged.GenerateAsync(Request);
        var actual = await pipeline.GenerateAsync(Request with { Loras = set });
        return (actual[0].Png, expected[0].Png);
    }
}
