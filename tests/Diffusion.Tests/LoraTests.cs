using RenderFarm.GenerationRules;
using System.Security.Cryptography;
using RenderFarm.Diffusion.Lora;
using RenderFarm.Diffusion.Weights;
using RenderFarm.ModelBuilder;
using RenderFarm.ModelBuilder.Lora;

namespace RenderFarm.Diffusion.Tests;

public class LoraTests(LoraFixture fixture) : IClassFixture<LoraFixture>
{
    private static GenerationRequest Request(params ImagePrompt[] images) => new(images, 64, 64, 3, 7.5f, "euler", "tiny");

    private static byte[] Pixels(GeneratedImage image) => PngPixels.Decode(image.Png);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ScaleZeroRendersByteIdenticallyToThePlainModel(bool torchNames)
    {
        var pipeline = fixture.Pipeline("tiny", torchNames);
        var plain = await pipeline.GenerateAsync(Request(new ImagePrompt("a red fox", "blurry", 5)));
        var zero = await pipeline.GenerateAsync(Request(new ImagePrompt("a red fox <lora:style:0>", "blurry", 5)));
        var zeroBoth = await pipeline.GenerateAsync(Request(new ImagePrompt("a red fox", "blurry", 5)) with { Loras = LoraSet.Of(new LoraWeight("style", 0), new LoraWeight("detail", 0)) });
        Assert.Equal(Pixels(plain[0]), Pixels(zero[0]));
        Assert.Equal(Pixels(plain[0]), Pixels(zeroBoth[0]));
        // The zero-scale variant really ran through merged sessions of its own.
        Assert.Contains(pipeline.Variants, v => v.Loras.Equals(LoraSet.Of(new LoraWeight("style", 0))) && v.Components.Contains("unet") && v.OverrideBytes > 0);
        var styled = await pipeline.GenerateAsync(Request(new ImagePrompt("a red fox <lora:style:1>", "blurry", 5)));
        Assert.NotEqual(Pixels(plain[0]), Pixels(styled[0]));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ALoraRendersExactlyAsTheModelWithItsMergedWeightsWrittenIn(bool torchNames)
    {
        // The sessions' replaced weights take effect: the same images as a model directory whose files hold the merged
        // weights (no ONNX Runtime optimisation keeps the file's own values).
        var set = LoraSet.Of(new LoraWeight("style", 0.8f), new LoraWeight("detail", 1.5f, 0.7f));
        var merged = Merge("tiny", set, torchNames);
        var directory = Path.Combine(fixture.Root, "merged-" + torchNames);
        ModelPresets.Write("tiny", directory, new ModelWriteOptions
        {
            TorchExportNames = torchNames,
            Force = true,
            ReplaceWeights = (component, init) => merged.GetValueOrDefault(component)?.FirstOrDefault(w => w.Initializer.Name == init.Name)?.ToArray(),
        });
        using var reference = StableDiffusionPipeline.Load(directory);
        var request = Request(new ImagePrompt("a lighthouse", "", 3), new ImagePrompt("a boat", "fog", 4));
        var expected = await reference.GenerateAsync(request);
        var actual = await fixture.Pipeline("tiny", torchNames).GenerateAsync(request with { Loras = set });
        Assert.Equal(Pixels(expected[0]), Pixels(actual[0]));
        Assert.Equal(Pixels(expected[1]), Pixels(actual[1]));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void MergedWeightsEqualAnIndependentComputationFromTheLoraFile(bool torchNames)
    {
        var set = LoraSet.Of(new LoraWeight("style", 0.8f, 1.3f));
        var merged = Merge("tiny", set, torchNames);
        var file = LoraFixture.ReadSafeTensors(fixture.LoraPath("style"));
        // A linear and a 3×3 conv of the UNet, a linear of the text encoder (LoRA tensors are float16 in this file).
        string[] checks =
        [
            "unet|down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
            "unet|down_blocks.0.resnets.0.conv1",
            "unet|down_blocks.0.attentions.0.proj_in",
            "text_encoder|text_model.encoder.layers.1.mlp.fc1",
        ];
        foreach (var check in checks)
        {
            var (component, module) = (check.Split('|')[0], check.Split('|')[1]);
            string key = (component == "unet" ? "lora_unet_" : "lora_te_") + module.Replace('.', '_');
            float multiplier = component == "unet" ? 1.3f : 0.8f;
            var expected = Expected("tiny", component, module, [(file, key, multiplier, LoraFixture.Style.Alpha ?? LoraFixture.Style.Rank)]);
            var actual = merged[component].Single(w => w.Initializer.Name == Name(component, module, torchNames)).ToArray();
            AssertClose(expected, actual, check);
        }
        // Only targeted weights were copied: no bias, norm or embedding table.
        Assert.All(merged.Values.SelectMany(w => w), w => Assert.True(w.Initializer.Dims.Length >= 2));
    }

    [Fact]
    public void TwoLorasAtOnceAddTheirUpdates()
    {
        var merged = Merge("tiny", LoraSet.Of(new LoraWeight("style", 0.5f), new LoraWeight("detail", 2f)), torchNames: false);
        var style = LoraFixture.ReadSafeTensors(fixture.LoraPath("style"));
        var detail = LoraFixture.ReadSafeTensors(fixture.LoraPath("detail"));
        const string module = "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k";
        var expected = Expected("tiny", "unet", module,
        [
            (style, "lora_unet_" + module.Replace('.', '_'), 0.5f, 2f),
            (detail, "unet." + module, 2f, LoraFixture.Detail.Rank),
        ]);
        AssertClose(expected, merged["unet"].Single(w => w.Initializer.Name == module + ".weight").ToArray(), module);
    }

    [Fact]
    public async Task AnSdxlLoraChangesBothTextEncodersAndTheUNet()
    {
        var merged = Merge("tiny-sdxl", LoraSet.Of(new LoraWeight("xl", 1f)), torchNames: false);
        Assert.Equal(["text_encoder", "text_encoder_2", "unet"], merged.Keys.Order());
        var file = LoraFixture.ReadSafeTensors(fixture.LoraPath("xl"));
        foreach (var (component, prefix) in new[] { ("text_encoder", "lora_te1_"), ("text_encoder_2", "lora_te2_") })
        {
            const string module = "text_model.encoder.layers.0.self_attn.k_proj";
            var expected = Expected("tiny-sdxl", component, module, [(file, prefix + module.Replace('.', '_'), 1f, LoraFixture.Xl.Rank)]);
            AssertClose(expected, merged[component].Single(w => w.Initializer.Name == module + ".weight").ToArray(), component);
        }
        var pipeline = fixture.Pipeline("tiny-sdxl");
        var request = new GenerationRequest([new ImagePrompt("a castle <lora:xl:0.9>", "", 2)], 64, 64, 2, 5f, "euler", "tiny-sdxl");
        await pipeline.GenerateAsync(request);
        var variant = Assert.Single(pipeline.Variants, v => v.Loras.Items.Any(l => l.Name == "xl"));
        Assert.Equal(["text_encoder", "text_encoder_2", "unet"], variant.Components.Order());
    }

    [Fact]
    public void UnknownKeysNamesAndArchitecturesAreRefusedNamingTheProblem()
    {
        var tiny = fixture.Pipeline("tiny");
        var key = Assert.Throws<ArgumentException>(() => tiny.CheckLoras(LoraSet.Of(new LoraWeight("bogus", 1))));
        Assert.Contains("lora_unet_down_blocks_0_attentions_0_no_such_layer", key.Message);
        var name = Assert.Throws<ArgumentException>(() => tiny.CheckLoras(LoraSet.Of(new LoraWeight("nonesuch", 1))));
        Assert.Contains("nonesuch", name.Message);
        var xlOnSd = Assert.Throws<ArgumentException>(() => tiny.CheckLoras(LoraSet.Of(new LoraWeight("xl", 1))));
        Assert.Contains("SDXL", xlOnSd.Message);
        var sdOnXl = Assert.Throws<ArgumentException>(() => fixture.Pipeline("tiny-sdxl").CheckLoras(LoraSet.Of(new LoraWeight("style", 1))));
        Assert.Contains("SD 1.x/2.x", sdOnXl.Message);
        // A request fails before rendering, as an input fault.
        var request = Request(new ImagePrompt("a fox <lora:bogus:1>", "", 1));
        var failure = Assert.Throws<ArgumentException>(() => { _ = tiny.GenerateAsync(request); });
        Assert.Equal(GenerationFailureKind.Input, GenerationFailure.Classify(failure));
    }

    [Theory]
    [InlineData(ModelBatching.Image)]
    [InlineData(ModelBatching.Batch)]
    public async Task ARequestMixingLoraSetsRendersEachImageAsItRendersAlone(ModelBatching batching)
    {
        var pipeline = fixture.Pipeline("tiny", batching: batching);
        ImagePrompt[] images =
        [
            new("a red fox", "blurry", 1),
            new("a red fox <lora:style:0.9>", "blurry", 1),
            new("<lora:style:0.9> a red fox <lora:detail:0.6>", "blurry", 1),
            new("a red fox", "blurry", 2),
        ];
        var together = await pipeline.GenerateAsync(Request(images));
        for (int i = 0; i < images.Length; i++)
        {
            var alone = await pipeline.GenerateAsync(Request(images[i]));
            Assert.Equal(Pixels(alone[0]), Pixels(together[i]));
        }
        Assert.NotEqual(Pixels(together[0]), Pixels(together[1]));
        Assert.NotEqual(Pixels(together[1]), Pixels(together[2]));
    }

    [Fact]
    public async Task PngParametersListTheLorasWithA1111sShortHash()
    {
        var pipeline = fixture.Pipeline("tiny");
        var images = await pipeline.GenerateAsync(Request(new ImagePrompt("a fox <lora:style:0.7>", "", 9)) with { Loras = LoraSet.Of(new LoraWeight("detail", 0.5f)) });
        var text = PngMetadata.Read(images[0].Png).Text["parameters"];
        Assert.Equal($"Lora hashes: \"detail: {AddnetHash("detail")}, style: {AddnetHash("style")}\"", text[text.IndexOf("Lora hashes", StringComparison.Ordinal)..]);
        // The request's own LoRA is written as the tag A1111 would need; the prompt's tag stays as written.
        Assert.StartsWith("a fox <lora:style:0.7> <lora:detail:0.5>\n", text);
    }

    [Fact]
    public async Task VariantsAreKeptAndSwitchedWithoutRebuildingAndCanBeReleased()
    {
        using var pipeline = StableDiffusionPipeline.Load(fixture.Model("tiny"), extensions: new ModelExtensions { Loras = fixture.Loras, MaxCachedVariants = 2 });
        var a = LoraSet.Of(new LoraWeight("style", 1));
        var b = LoraSet.Of(new LoraWeight("detail", 1));
        var c = LoraSet.Of(new LoraWeight("style", 0.5f));
        var built = await pipeline.PrepareVariantAsync(a);
        Assert.NotNull(built);
        await pipeline.GenerateAsync(Request(new ImagePrompt("x", "", 1)) with { Loras = b });
        await pipeline.GenerateAsync(Request(new ImagePrompt("x", "", 1)) with { Loras = a });
        // a was reused, not rebuilt.
        Assert.Equal(built.BuildTime, pipeline.Variants.Single(v => v.Loras.Equals(a)).BuildTime);
        await pipeline.GenerateAsync(Request(new ImagePrompt("x", "", 1)) with { Loras = c });
        // At most two kept: b, the least recently used, went.
        Assert.Equal([c.Key, a.Key], pipeline.Variants.Select(v => v.Loras.Key));
        Assert.True(pipeline.ReleaseVariant(a));
        Assert.False(pipeline.ReleaseVariant(a));
        Assert.Single(pipeline.Variants);
        // Only changed weights are held: exactly the float32 weights the LoRA has layers for.
        long targeted = LoraFileWriter.Modules(ModelPresets.Get("tiny"), LoraFixture.Style).Sum(m => m.TorchShape.Aggregate(4L, (a, d) => a * d));
        Assert.Equal(targeted, pipeline.Variants[0].OverrideBytes);
    }

    private Dictionary<string, List<ReplacedWeight>> Merge(string preset, LoraSet set, bool torchNames)
    {
        var directory = fixture.Model(preset, torchNames);
        var locators = new[] { "unet", "text_encoder", "text_encoder_2" }
            .Where(c => File.Exists(Path.Combine(directory, c, "model.onnx")))
            .ToDictionary(c => c, c => new WeightLocator(OnnxGraph.Read(Path.Combine(directory, c, "model.onnx"))));
        return LoraMerge.Compute(set, fixture.Loras.Get, locators, xl: locators.ContainsKey("text_encoder_2"));
    }

    /// <summary>The initializer a module's weight has: its parameter name, or in torch naming onnx::MatMul_N for a Linear.</summary>
    private string Name(string component, string module, bool torchNames)
    {
        if (!torchNames)
        {
            return module + ".weight";
        }
        var graph = ModelDirectoryWriter.BuildGraphs(ModelPresets.Get("tiny"), torchExportNames: true).Single(g => g.Folder == component).Graph;
        return graph.Initializers.Single(i => i.SeedName == module + ".weight").Name;
    }

    /// <summary>W + Σ multiplier·(alpha/rank)·up·down in float64, in the builder's stored layout (Linear [in, out], conv [out, in, kh, kw]).</summary>
    private static double[] Expected(string preset, string component, string module,
        IReadOnlyList<(Dictionary<string, (long[] Shape, double[] Values)> File, string Key, float Multiplier, float Alpha)> layers)
    {
        var (weight, dims) = LoraFixture.BuilderWeight(preset, component, module + ".weight");
        bool linear = dims.Length == 2;
        long outFeatures = linear ? dims[1] : dims[0];
        long inFeatures = linear ? dims[0] : dims[1..].Aggregate(1L, (a, d) => a * d);
        var result = weight.Select(v => (double)v).ToArray();
        foreach (var (file, key, multiplier, alpha) in layers)
        {
            bool kohya = key.StartsWith("lora_", StringComparison.Ordinal);
            var down = file[key + (kohya ? ".lora_down.weight" : ".lora_A.weight")];
            var up = file[key + (kohya ? ".lora_up.weight" : ".lora_B.weight")];
            long rank = down.Shape[0];
            double scale = multiplier * alpha / rank;
            for (long o = 0; o < outFeatures; o++)
            {
                for (long i = 0; i < inFeatures; i++)
                {
                    double delta = 0;
                    for (long k = 0; k < rank; k++)
                    {
                        delta += up.Values[o * rank + k] * down.Values[k * inFeatures + i];
                    }
                    result[linear ? i * outFeatures + o : o * inFeatures + i] += scale * delta;
                }
            }
        }
        return result;
    }

    private static void AssertClose(double[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(expected[i] - actual[i]) / (1e-3 + Math.Abs(expected[i])));
        }
        Assert.True(worst < 1e-5, $"{what}: relative error {worst:E2}");
        Assert.NotEqual(0, expected.Zip(actual).Count(p => p.First != 0));
    }

    /// <summary>A1111's Lora hash: SHA-256 of the bytes after the safetensors header, first 12 hex digits.</summary>
    private string AddnetHash(string name)
    {
        var bytes = File.ReadAllBytes(fixture.LoraPath(name));
        long header = BitConverter.ToInt64(bytes, 0);
        return Convert.ToHexStringLower(SHA256.HashData(bytes.AsSpan((int)(8 + header))))[..12];
    }
}
