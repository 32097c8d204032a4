namespace RenderFarm.ModelBuilder.Tests;

/// <summary>
/// The ONNX graphs compute what the architecture says: each component's ONNX Runtime output matches an independent
/// float64 reference forward pass (<see cref="ReferenceModel"/>) over the same weights, to 1e-4 of the output's scale.
/// </summary>
[Collection(ModelDirectoryCollection.Name)]
public class ReferenceForwardTests(ModelDirectoryFixture models)
{
    private const double Tolerance = 1e-4;

    [Theory]
    [InlineData("tiny")]
    [InlineData("tiny-sd2")]
    [InlineData("tiny-sdxl")]
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
            AssertClose(last, Batch(r["last_hidden_state"].Values, b, 2), "last_hidden_state");
            AssertClose(pooled, Batch(r["pooler_output"].Values, b, 2), "pooler_output");
            if (def.TextEncoder.OutputHiddenStates)
                AssertClose(hidden[^2], Batch(r[$"hidden_states.{hidden.Count - 2}"].Values, b, 2), "penultimate hidden state");
        }
    }

    [Fact]
    public void SdxlSecondTextEncoderProjectsThePooledStateWithGelu()
    {
        var def = ModelPresets.Get("tiny-sdxl");
        string path = Component("tiny-sdxl", "text_encoder_2");
        var weights = new OnnxWeights(path);
        int[] prompt = Prompt("tiny-sdxl", [42, 43, 44], 3);

        using var s = Ort.Open(path);
        var r = Ort.Run(s, Ort.Input(s, "input_ids", [1, 77], prompt.Select(v => (float)v).ToArray()));
        var (last, pooled, hidden) = new ReferenceModel(weights).ClipText(prompt, def.TextEncoder2!, quickGelu: false);
        var projection = weights["text_projection.weight"];
        int h = def.TextEncoder2!.Hidden, p = def.TextEncoder2.ProjectionDim!.Value;
        var embeds = Enumerable.Range(0, p).Select(o => Enumerable.Range(0, h).Sum(i => pooled[i] * projection[i * p + o])).ToArray();
        AssertClose(embeds, r["text_embeds"].Values, "text_embeds");
        AssertClose(last, r["last_hidden_state"].Values, "last_hidden_state");
        AssertClose(hidden[1], r["hidden_states.1"].Values, "hidden_states.1");
    }

    [Fact]
    public void VaeDecoderMatchesTheReferenceAutoencoderKlDecoder()
    {
        var def = ModelPresets.Get("tiny");
        string path = Component("tiny", "vae_decoder");
        var latents = Ort.Random(4 * 4 * 6, 11, 2f);

        using var s = Ort.Open(path);
        var r = Ort.Run(s, Ort.Input(s, "latent_sample", [1, 4, 4, 6], latents));
        var expected = new ReferenceModel(new OnnxWeights(path)).VaeDecoder(new Img(ToDouble(latents), 4, 4, 6), def.Vae);
        Assert.Equal([1, 3, 32, 48], r["sample"].Shape);
        AssertClose(expected.D, r["sample"].Values, "sample");
    }

    [Fact]
    public void VaeEncoderMatchesTheReferenceAutoencoderKlEncoderMean()
    {
        var def = ModelPresets.Get("tiny");
        string path = Component("tiny", "vae_encoder");
        var image = Ort.Random(3 * 32 * 48, 12);

        using var s = Ort.Open(path);
        var r = Ort.Run(s, Ort.Input(s, "sample", [1, 3, 32, 48], image));
        var expected = new ReferenceModel(new OnnxWeights(path)).VaeEncoderMean(new Img(ToDouble(image), 3, 32, 48), def.Vae);
        Assert.Equal([1, 4, 4, 6], r["latent_sample"].Shape);
        AssertClose(expected.D, r["latent_sample"].Values, "latent_sample");
    }

    [Theory]
    [InlineData("tiny", Tolerance)]
    [InlineData("tiny-inpaint", Tolerance)]
    [InlineData("tiny-sd2", Tolerance)]
    [InlineData("tiny-sdxl", Tolerance)]
    [InlineData("tiny-int64-timestep", Tolerance)]
    [InlineData("tiny-fp16", 2e-3)] // float16 output rounding: 2^-11 of the value
    public void UNetMatchesTheReferenceUNet2DConditionModel(string preset, double tolerance)
    {
        var def = ModelPresets.Get(preset);
        var c = def.UNet;
        string path = Component(preset, "unet");
        const int batch = 2, h = 8, w = 4, seq = 77;
        bool fp16 = def.FloatType == Graph.ElementType.Float16;
        float[] Round(float[] v) => fp16 ? v.Select(x => (float)(Half)x).ToArray() : v;
        var sample = Round(Ort.Random(batch * c.InChannels * h * w, 21));
        var context = Round(Ort.Random(batch * seq * c.ContextDim, 22));
        var textEmbeds = Round(Ort.Random(batch * 32, 23));
        float[] timeIds = [64, 32, 0, 0, 64, 32, 48, 48, 8, 8, 64, 64];
        const float timestep = 601;

        using var s = Ort.Open(path);
        var feed = new List<Microsoft.ML.OnnxRuntime.NamedOnnxValue>
        {
            Ort.Input(s, "sample", [batch, c.InChannels, h, w], sample),
            Ort.Input(s, "timestep", [1], [timestep]),
            Ort.Input(s, "encoder_hidden_states", [batch, seq, c.ContextDim], context),
        };
        if (c.Sdxl is not null)
        {
            feed.Add(Ort.Input(s, "text_embeds", [batch, 32], textEmbeds));
            feed.Add(Ort.Input(s, "time_ids", [batch, 6], timeIds));
        }
        var actual = Ort.Run(s, feed.ToArray())["out_sample"].Values;

        var reference = new ReferenceModel(new OnnxWeights(path));
        for (int b = 0; b < batch; b++)
        {
            var x = new Img(ToDouble(Batch(sample, b, batch)), c.InChannels, h, w);
            var expected = reference.UNet(x, timestep, ToDouble(Batch(context, b, batch)), seq, c,
                ToDouble(Batch(textEmbeds, b, batch)), ToDouble(Batch(timeIds, b, batch)));
            AssertClose(expected.D, Batch(actual, b, batch), $"out_sample[{b}]", tolerance);
        }
    }

    /// <summary>BOS, the given token ids (offset into the learned merges), EOS, then EOS padding to 77.</summary>
    private int[] Prompt(string preset, int[] tokens, int offset)
    {
        var vocab = System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, int>>(
            File.ReadAllText(Path.Combine(models.PathOf(preset), "tokenizer", "vocab.json")))!;
        int bos = vocab["<|startoftext|>"], eos = vocab["<|endoftext|>"];
        var ids = Enumerable.Repeat(eos, 77).ToArray();
        ids[0] = bos;
        for (int i = 0; i < tokens.Length; i++)
            ids[1 + i] = (tokens[i] + offset) % bos;
        return ids;
    }

    private string Component(string preset, string component) => Path.Combine(models.PathOf(preset), component, "model.onnx");

    private static float[] Batch(float[] values, int b, int batch)
    {
        int n = values.Length / batch;
        return values.AsSpan(b * n, n).ToArray();
    }

    private static double[] ToDouble(float[] v) => v.Select(x => (double)x).ToArray();

    private static void AssertClose(double[] expected, float[] actual, string what, double tolerance = Tolerance)
    {
        Assert.Equal(expected.Length, actual.Length);
        double scale = expected.Max(Math.Abs), worst = 0;
        for (int i = 0; i < expected.Length; i++)
            worst = Math.Max(worst, Math.Abs(expected[i] - actual[i]));
        Assert.True(scale > 0, $"{what}: reference output is all zeros");
        Assert.True(worst <= tolerance * scale, $"{what}: max |ort − reference| = {worst:E3}, {worst / scale:E3} of max |reference| {scale:E3}");
    }
}
