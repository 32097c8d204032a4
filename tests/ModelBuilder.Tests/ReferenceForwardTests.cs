using RenderFarm.ModelBuilder.Graph;

namespace RenderFarm.ModelBuilder.Tests;

/// <summary>
/// The ONNX graphs compute what the architecture says: every component of every tiny preset, run in ONNX Runtime
/// through its own input types (int32/int64 input_ids, float32/float16/int64 timestep, float16 I/O), matches an
/// independent float64 reference forward pass (<see cref="ReferenceModel"/>) over the same weights.
/// </summary>
/// <remarks>
/// Error measure (<see cref="AssertClose"/>): the max-norm relative error max|ort − ref| / max|ref| must be within the
/// preset's tolerance, and, per element where |ref| is at least 1 % of max|ref|, |ort − ref| / |ref| within
/// <see cref="ElementFactor"/> times it (so small outputs cannot hide behind a large maximum).
/// float32 graphs: 1e-4. float16 graphs compute in float32 on float16 weights and float16-rounded inputs (the
/// reference sees exactly those values), then cast the outputs to float16; round-to-nearest moves a value by at most
/// half a unit in the last place, 2⁻¹¹ of its magnitude (float16 has 10 fraction bits, eps 2⁻¹⁰ ≈ 9.8e-4), so the
/// tolerance is 2⁻¹¹ + 1e-4: the rounding bound plus the float32 allowance.
/// <see cref="Fp16WeightsAreTheFloat16RoundingOfTheFloat32Weights"/> shows that precision is the only difference.
/// </remarks>
[Collection(ModelDirectoryCollection.Name)]
public class ReferenceForwardTests(ModelDirectoryFixture models)
{
    private const double Float32Tolerance = 1e-4;
    private const double Float16Tolerance = 1.0 / 2048 + Float32Tolerance;
    private const double ElementFactor = 10;

    public static TheoryData<string> TinyPresets => PresetSignatureTests.SmallPresets;

    public static TheoryData<string> PresetsWithASecondTextEncoder =>
        new(ModelPresets.Definitions.Where(p => p.TextEncoder2 is not null && !p.FullSize).Select(p => p.Name));

    /// <summary>The components the tests below compare: a preset writing any other one would go unchecked.</summary>
    [Theory]
    [MemberData(nameof(TinyPresets))]
    public void EveryComponentThePresetWritesHasAReferenceCheckHere(string preset)
    {
        var def = ModelPresets.Get(preset);
        string[] checkedHere = def.TextEncoder2 is null
            ? ["text_encoder", "unet", "vae_decoder", "vae_encoder"]
            : def.WritesFirstEncoder ? ["text_encoder", "text_encoder_2", "unet", "vae_decoder", "vae_encoder"]
            : ["text_encoder_2", "unet", "vae_decoder", "vae_encoder"];
        // tiny-control's residual UNet is held to the unet checked here: equal outputs at zero residuals (ControlNetBuilderTests;
        // tiny-sdxl-control's through the pipeline, Diffusion.Tests' SdxlControlNetTests).
        if (def.ControlNetUNet) checkedHere = [.. checkedHere, ModelDirectoryWriter.ControlNetUNetFolder];
        if (def.TinyDecoder is not null) checkedHere = [.. checkedHere, ModelDirectoryWriter.TinyDecoderFolder];
        checkedHere = [.. checkedHere.Order(StringComparer.Ordinal)];
        var written = Directory.GetFiles(models.PathOf(preset), "model.onnx", SearchOption.AllDirectories)
            .Select(f => Path.GetFileName(Path.GetDirectoryName(f))!);
        Assert.Equal(checkedHere, written.Order(StringComparer.Ordinal));
    }

    [Theory]
    [MemberData(nameof(PresetSignatureTests.SmallPresetsWithAFirstTextEncoder), MemberType = typeof(PresetSignatureTests))]
    public void TextEncoderMatchesTheReferenceClipTransformer(string preset)
    {
        var def = ModelPresets.Get(preset);
        string path = Component(preset, "text_encoder");
        var reference = new ReferenceModel(new OnnxWeights(path));
        int[][] prompts = [Prompt(preset, [5, 300, 77, 1000], 9), Prompt(preset, [], 0)];

        using var s = Ort.Open(path);
        var r = Ort.Run(s, Ort.Input(s, "input_ids", [2, 77], prompts.SelectMany(p => p).Select(v => (float)v).ToArray()));
        for (int b = 0; b < 2; b++)
        {
            var (last, pooled, hidden) = reference.ClipText(prompts[b], def.TextEncoder, def.TextEncoder.Act == Activation.QuickGelu);
            AssertClose(last, Batch(r["last_hidden_state"].Values, b, 2), "last_hidden_state", def);
            AssertClose(pooled, Batch(r["pooler_output"].Values, b, 2), "pooler_output", def);
            if (def.TextEncoder.OutputHiddenStates)
                for (int i = 0; i < hidden.Count; i++)
                    AssertClose(hidden[i], Batch(r[$"hidden_states.{i}"].Values, b, 2), $"hidden_states.{i}", def);
        }
    }

    [Theory]
    [MemberData(nameof(PresetsWithASecondTextEncoder))]
    public void SecondTextEncoderProjectsThePooledStateWithGelu(string preset)
    {
        var def = ModelPresets.Get(preset);
        var c = def.TextEncoder2!;
        string path = Component(preset, "text_encoder_2");
        var weights = new OnnxWeights(path);
        int[] prompt = Prompt(preset, [42, 43, 44], 3);

        using var s = Ort.Open(path);
        var r = Ort.Run(s, Ort.Input(s, "input_ids", [1, 77], prompt.Select(v => (float)v).ToArray()));
        var (last, pooled, hidden) = new ReferenceModel(weights).ClipText(prompt, c, c.Act == Activation.QuickGelu);
        var projection = weights["text_projection.weight"];
        int h = c.Hidden, p = c.ProjectionDim!.Value;
        var embeds = Enumerable.Range(0, p).Select(o => Enumerable.Range(0, h).Sum(i => pooled[i] * projection[i * p + o])).ToArray();
        AssertClose(embeds, r["text_embeds"].Values, "text_embeds", def);
        AssertClose(last, r["last_hidden_state"].Values, "last_hidden_state", def);
        for (int i = 0; i < hidden.Count; i++)
            AssertClose(hidden[i], r[$"hidden_states.{i}"].Values, $"hidden_states.{i}", def);
    }

    [Theory]
    [MemberData(nameof(TinyPresets))]
    public void VaeDecoderMatchesTheReferenceAutoencoderKlDecoder(string preset)
    {
        var def = ModelPresets.Get(preset);
        string path = Component(preset, "vae_decoder");
        var latents = Representable(def, Ort.Random(4 * 4 * 6, 11, 2f));

        using var s = Ort.Open(path);
        var r = Ort.Run(s, Ort.Input(s, "latent_sample", [1, 4, 4, 6], latents));
        var expected = new ReferenceModel(new OnnxWeights(path)).VaeDecoder(new Img(ToDouble(latents), 4, 4, 6), def.Vae);
        Assert.Equal([1, 3, 32, 48], r["sample"].Shape);
        AssertClose(expected.D, r["sample"].Values, "sample", def);
    }

    public static TheoryData<string> PresetsWithATinyDecoder =>
        new(ModelPresets.Definitions.Where(p => p.TinyDecoder is not null && !p.FullSize).Select(p => p.Name));

    /// <summary>Latents up to ±6 reach into the tanh clamp (±3); the decoder scales each side by 2^(stages − 1).</summary>
    [Theory]
    [MemberData(nameof(PresetsWithATinyDecoder))]
    public void TinyDecoderMatchesTheReferenceTaesdDecoder(string preset)
    {
        var def = ModelPresets.Get(preset);
        var c = def.TinyDecoder!;
        string path = Component(preset, ModelDirectoryWriter.TinyDecoderFolder);
        var latents = Representable(def, Ort.Random(2 * 4 * 4 * 6, 13, 6f));

        using var s = Ort.Open(path);
        var r = Ort.Run(s, Ort.Input(s, "latent_sample", [2, 4, 4, 6], latents));
        Assert.Equal([2, 3, 4 * c.UpFactor, 6 * c.UpFactor], r["sample"].Shape);
        var reference = new ReferenceModel(new OnnxWeights(path));
        for (int b = 0; b < 2; b++)
        {
            var expected = reference.TinyDecoder(new Img(ToDouble(Batch(latents, b, 2)), 4, 4, 6), c);
            AssertClose(expected.D, Batch(r["sample"].Values, b, 2), $"sample[{b}]", def);
        }
    }

    [Theory]
    [MemberData(nameof(TinyPresets))]
    public void VaeEncoderMatchesTheReferenceAutoencoderKlEncoderMean(string preset)
    {
        var def = ModelPresets.Get(preset);
        string path = Component(preset, "vae_encoder");
        var image = Representable(def, Ort.Random(3 * 32 * 48, 12));

        using var s = Ort.Open(path);
        var r = Ort.Run(s, Ort.Input(s, "sample", [1, 3, 32, 48], image));
        var expected = new ReferenceModel(new OnnxWeights(path)).VaeEncoderMean(new Img(ToDouble(image), 3, 32, 48), def.Vae);
        Assert.Equal([1, 4, 4, 6], r["latent_sample"].Shape);
        AssertClose(expected.D, r["latent_sample"].Values, "latent_sample", def);
    }

    [Theory]
    [MemberData(nameof(TinyPresets))]
    public void UNetMatchesTheReferenceUNet2DConditionModel(string preset)
    {
        var def = ModelPresets.Get(preset);
        var c = def.UNet;
        string path = Component(preset, "unet");
        const int batch = 2, h = 8, w = 4, seq = 77;
        var sample = Representable(def, Ort.Random(batch * c.InChannels * h * w, 21));
        var context = Representable(def, Ort.Random(batch * seq * c.ContextDim, 22));
        int embedDim = c.Sdxl?.TextEmbedDim ?? 0;
        var textEmbeds = Representable(def, Ort.Random(batch * embedDim, 23));
        int timeIdCount = c.Sdxl?.TimeIdCount ?? 6;
        float[] timeIds = timeIdCount == 6 ? [64, 32, 0, 0, 64, 32, 48, 48, 8, 8, 64, 64] : [64, 32, 0, 0, 6, 48, 48, 8, 8, 2.5f];
        int condDim = c.TimeCondProjDim ?? 0;
        var timestepCond = Representable(def, Ort.Random(batch * condDim, 24));
        const float timestep = 601; // an integer, exact in float16 and int64 alike

        using var s = Ort.Open(path);
        var feed = new List<Microsoft.ML.OnnxRuntime.NamedOnnxValue>
        {
            Ort.Input(s, "sample", [batch, c.InChannels, h, w], sample),
            Ort.Input(s, "timestep", [1], [timestep]),
            Ort.Input(s, "encoder_hidden_states", [batch, seq, c.ContextDim], context),
        };
        if (c.Sdxl is not null)
        {
            feed.Add(Ort.Input(s, "text_embeds", [batch, embedDim], textEmbeds));
            feed.Add(Ort.Input(s, "time_ids", [batch, timeIdCount], timeIds));
        }
        if (condDim > 0)
            feed.Add(Ort.Input(s, "timestep_cond", [batch, condDim], timestepCond));
        var actual = Ort.Run(s, feed.ToArray())["out_sample"].Values;

        var reference = new ReferenceModel(new OnnxWeights(path));
        for (int b = 0; b < batch; b++)
        {
            var x = new Img(ToDouble(Batch(sample, b, batch)), c.InChannels, h, w);
            var expected = reference.UNet(x, timestep, ToDouble(Batch(context, b, batch)), seq, c,
                ToDouble(Batch(textEmbeds, b, batch)), ToDouble(Batch(timeIds, b, batch)), ToDouble(Batch(timestepCond, b, batch)));
            AssertClose(expected.D, Batch(actual, b, batch), $"out_sample[{b}]", def);
        }
    }

    /// <summary>
    /// The ControlNet of each architecture that has one (SD's, and SDXL's with text_embeds/time_ids into add_embedding)
    /// against the reference ControlNetModel: every down-block residual and the mid-block residual, at a scale of 0.75.
    /// </summary>
    [Theory]
    [InlineData("tiny")]
    [InlineData("tiny-sdxl")]
    public void ControlNetMatchesTheReferenceControlNetModel(string preset)
    {
        var def = ModelPresets.Get(preset);
        var c = def.UNet;
        var folder = Directory.CreateTempSubdirectory("rf-controlnet-reference-").FullName;
        try
        {
            string path = Path.Combine(ControlNetWriter.Write(def, folder, seed: 7).Folder, "model.onnx");
            const int batch = 2, h = 8, w = 4, seq = 77;
            var sample = Ort.Random(batch * 4 * h * w, 31);
            var context = Ort.Random(batch * seq * c.ContextDim, 32);
            var image = Ort.Random(batch * 3 * 8 * h * 8 * w, 33).Select(v => (v + 1) / 2).ToArray();
            int embedDim = c.Sdxl?.TextEmbedDim ?? 0;
            var textEmbeds = Ort.Random(batch * embedDim, 34);
            float[] timeIds = [64, 32, 0, 0, 64, 32, 48, 48, 8, 8, 64, 64];
            const float timestep = 601;
            const double scale = 0.75;

            using var s = Ort.Open(path);
            var feed = new List<Microsoft.ML.OnnxRuntime.NamedOnnxValue>
            {
                Ort.Input(s, "sample", [batch, 4, h, w], sample),
                Ort.Input(s, "timestep", [1], [timestep]),
                Ort.Input(s, "encoder_hidden_states", [batch, seq, c.ContextDim], context),
                Ort.Input(s, "controlnet_cond", [batch, 3, 8 * h, 8 * w], image),
                Microsoft.ML.OnnxRuntime.NamedOnnxValue.CreateFromTensor("conditioning_scale", new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<double>(new[] { scale }, [])),
            };
            if (c.Sdxl is not null)
            {
                feed.Add(Ort.Input(s, "text_embeds", [batch, embedDim], textEmbeds));
                feed.Add(Ort.Input(s, "time_ids", [batch, 6], timeIds));
            }
            var actual = Ort.Run(s, feed.ToArray());
            var names = Enumerable.Range(0, actual.Count - 1).Select(Components.UNetBuilder.DownResidualName).Append(Components.UNetBuilder.MidResidualName).ToArray();

            var reference = new ReferenceModel(new OnnxWeights(path));
            for (int b = 0; b < batch; b++)
            {
                var expected = reference.ControlNet(new Img(ToDouble(Batch(sample, b, batch)), 4, h, w), timestep, ToDouble(Batch(context, b, batch)), seq,
                    new Img(ToDouble(Batch(image, b, batch)), 3, 8 * h, 8 * w), def.ControlNet!, scale,
                    ToDouble(Batch(textEmbeds, b, batch)), ToDouble(Batch(timeIds, b, batch)));
                Assert.Equal(names.Length, expected.Count);
                for (int k = 0; k < names.Length; k++)
                    AssertClose(expected[k].D, Batch(actual[names[k]].Values, b, batch), $"{names[k]}[{b}]", def);
            }
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>tiny-fp16 is tiny (same seed, same tensor names) with every parameter rounded once to float16.</summary>
    [Fact]
    public void Fp16WeightsAreTheFloat16RoundingOfTheFloat32Weights()
    {
        Assert.Equal(ElementType.Float16, ModelPresets.Get("tiny-fp16").FloatType);
        foreach (var component in new[] { "text_encoder", "unet", "vae_decoder", "vae_encoder" })
        {
            var full = new OnnxWeights(Component("tiny", component));
            var half = new OnnxWeights(Component("tiny-fp16", component));
            var halfTypes = half.Model.Graph.Initializer.ToDictionary(t => t.Name, t => (ElementType)t.DataType);
            // Parameters carry PyTorch names; graph constants (shapes, masks; float32 in both) are numbered "const_*".
            var parameters = full.Names.Where(n => !n.StartsWith("const_", StringComparison.Ordinal)).Order().ToArray();
            Assert.NotEmpty(parameters);
            Assert.Equal(parameters, halfTypes.Where(kv => kv.Value == ElementType.Float16).Select(kv => kv.Key).Order());
            foreach (var name in parameters)
            {
                Assert.Equal(full.Dims(name), half.Dims(name));
                var rounded = full[name].Select(v => (double)(Half)(float)v).ToArray();
                Assert.True(rounded.AsSpan().SequenceEqual(half[name]), $"{component}/{name} is not the float16 rounding of tiny's");
            }
        }
    }

    /// <summary>BOS, the given token ids (offset into the learned merges), EOS, then EOS padding to 77.</summary>
    private int[] Prompt(string preset, int[] tokens, int offset)
    {
        var vocab = System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, int>>(
            File.ReadAllText(Path.Combine(models.PathOf(preset), ModelPresets.Get(preset).WritesFirstEncoder ? "tokenizer" : "tokenizer_2", "vocab.json")))!;
        int bos = vocab["<|startoftext|>"], eos = vocab["<|endoftext|>"];
        var ids = Enumerable.Repeat(eos, 77).ToArray();
        ids[0] = bos;
        for (int i = 0; i < tokens.Length; i++)
            ids[1 + i] = (tokens[i] + offset) % bos;
        return ids;
    }

    private string Component(string preset, string component) => Path.Combine(models.PathOf(preset), component, "model.onnx");

    /// <summary>The values the model will actually see: float16 graphs take float16 inputs.</summary>
    private static float[] Representable(PresetDefinition def, float[] values) =>
        def.FloatType == ElementType.Float16 ? values.Select(x => (float)(Half)x).ToArray() : values;

    private static float[] Batch(float[] values, int b, int batch)
    {
        int n = values.Length / batch;
        return values.AsSpan(b * n, n).ToArray();
    }

    private static double[] ToDouble(float[] v) => v.Select(x => (double)x).ToArray();

    private static void AssertClose(double[] expected, float[] actual, string what, PresetDefinition def)
    {
        double tolerance = def.FloatType == ElementType.Float16 ? Float16Tolerance : Float32Tolerance;
        Assert.Equal(expected.Length, actual.Length);
        double scale = expected.Max(Math.Abs), worst = 0, worstElement = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double error = Math.Abs(expected[i] - actual[i]);
            worst = Math.Max(worst, error);
            if (Math.Abs(expected[i]) >= 0.01 * scale)
                worstElement = Math.Max(worstElement, error / Math.Abs(expected[i]));
        }
        Assert.True(scale > 0, $"{what}: reference output is all zeros");
        Assert.True(worst <= tolerance * scale,
            $"{what}: max |ort − reference| = {worst:E3}, {worst / scale:E3} of max |reference| {scale:E3} (tolerance {tolerance:E3})");
        Assert.True(worstElement <= ElementFactor * tolerance,
            $"{what}: worst per-element relative error {worstElement:E3} where |reference| ≥ 1 % of its max (limit {ElementFactor * tolerance:E3})");
    }
}
