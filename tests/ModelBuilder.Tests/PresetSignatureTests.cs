using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace RenderFarm.ModelBuilder.Tests;

/// <summary>Every small preset loads in ONNX Runtime with the diffusers ONNX export signatures and runs to finite outputs.</summary>
[Collection(ModelDirectoryCollection.Name)]
public class PresetSignatureTests(ModelDirectoryFixture models)
{
    /// <summary>What the design table says per preset: float type, timestep type, input_ids type, UNet channels, context.</summary>
    public sealed record Expectation(string Preset, Type Float, Type Timestep, Type Ids, int UNetIn, int Context, int Hidden, bool Sdxl);

    private static readonly Dictionary<string, Expectation> Table = new[]
    {
        new Expectation("tiny", typeof(float), typeof(float), typeof(int), 4, 32, 32, false),
        new Expectation("tiny-inpaint", typeof(float), typeof(float), typeof(int), 9, 32, 32, false),
        new Expectation("tiny-fp16", typeof(Float16), typeof(Float16), typeof(int), 4, 32, 32, false),
        new Expectation("tiny-int64-timestep", typeof(float), typeof(long), typeof(long), 4, 32, 32, false),
        new Expectation("tiny-sd2", typeof(float), typeof(float), typeof(int), 4, 1024, 1024, false),
        new Expectation("tiny-sdxl", typeof(float), typeof(float), typeof(int), 4, 64, 32, true),
    }.ToDictionary(e => e.Preset);

    public static TheoryData<string> SmallPresets => new(ModelPresets.Names.Where(n => n != "sd15"));

    [Fact]
    public void EveryPresetButSd15IsCoveredByTheSignatureTable() =>
        Assert.Equal(Table.Keys.Order(), ModelPresets.Names.Where(n => n != "sd15").Order());

    [Theory]
    [MemberData(nameof(SmallPresets))]
    public void TextEncoderTakesInputIdsAndReturnsHiddenStatesAndPooledOutput(string preset)
    {
        var e = Table[preset];
        using var s = Ort.Open(Component(preset, "text_encoder"));
        AssertSignature(s.InputMetadata, ("input_ids", e.Ids, [-1, 77]));
        var outputs = new List<(string, Type, int[])> { ("last_hidden_state", e.Float, [-1, 77, e.Hidden]), ("pooler_output", e.Float, [-1, e.Hidden]) };
        if (e.Sdxl)
            outputs.AddRange(Enumerable.Range(0, 3).Select(i => ($"hidden_states.{i}", e.Float, new[] { -1, 77, e.Hidden })));
        AssertSignature(s.OutputMetadata, outputs.ToArray());

        var r = Ort.Run(s, Ort.Input(s, "input_ids", [2, 77], Prompts(preset)));
        AssertFinite(r["last_hidden_state"], [2, 77, e.Hidden]);
        AssertFinite(r["pooler_output"], [2, e.Hidden]);
    }

    [Fact]
    public void SdxlSecondTextEncoderReturnsProjectedTextEmbedsAndEveryHiddenState()
    {
        using var s = Ort.Open(Component("tiny-sdxl", "text_encoder_2"));
        AssertSignature(s.InputMetadata, ("input_ids", typeof(int), [-1, 77]));
        AssertSignature(s.OutputMetadata,
            ("text_embeds", typeof(float), [-1, 32]),
            ("last_hidden_state", typeof(float), [-1, 77, 32]),
            ("hidden_states.0", typeof(float), [-1, 77, 32]),
            ("hidden_states.1", typeof(float), [-1, 77, 32]),
            ("hidden_states.2", typeof(float), [-1, 77, 32]));
        var r = Ort.Run(s, Ort.Input(s, "input_ids", [2, 77], Prompts("tiny-sdxl")));
        AssertFinite(r["text_embeds"], [2, 32]);
        AssertFinite(r["hidden_states.1"], [2, 77, 32]);
        Assert.True(File.Exists(Path.Combine(models.PathOf("tiny-sdxl"), "tokenizer_2", "vocab.json")));
    }

    [Theory]
    [MemberData(nameof(SmallPresets))]
    public void UNetPredictsNoiseOfTheLatentShapeForAClassifierFreeGuidanceBatch(string preset)
    {
        var e = Table[preset];
        using var s = Ort.Open(Component(preset, "unet"));
        var inputs = new List<(string, Type, int[])>
        {
            ("sample", e.Float, [-1, e.UNetIn, -1, -1]),
            ("timestep", e.Timestep, [-1]),
            ("encoder_hidden_states", e.Float, [-1, -1, e.Context]),
        };
        if (e.Sdxl)
        {
            inputs.Add(("text_embeds", e.Float, [-1, 32]));
            inputs.Add(("time_ids", e.Float, [-1, 6]));
        }
        AssertSignature(s.InputMetadata, inputs.ToArray());
        AssertSignature(s.OutputMetadata, ("out_sample", e.Float, [-1, 4, -1, -1]));

        foreach (int steps in new[] { 1, 2 }) // the pipeline passes timestep [1]; a per-sample [B] works too
        {
            var feed = new List<NamedOnnxValue>
            {
                Ort.Input(s, "sample", [2, e.UNetIn, 8, 8], Ort.Random(2 * e.UNetIn * 64, 1)),
                Ort.Input(s, "timestep", [steps], Enumerable.Repeat(981f, steps).ToArray()),
                Ort.Input(s, "encoder_hidden_states", [2, 77, e.Context], Ort.Random(2 * 77 * e.Context, 2)),
            };
            if (e.Sdxl)
            {
                feed.Add(Ort.Input(s, "text_embeds", [2, 32], Ort.Random(64, 3)));
                feed.Add(Ort.Input(s, "time_ids", [2, 6], [64, 64, 0, 0, 64, 64, 64, 64, 0, 0, 64, 64]));
            }
            var r = Ort.Run(s, feed.ToArray());
            AssertFinite(r["out_sample"], [2, 4, 8, 8]);
        }
    }

    [Theory]
    [MemberData(nameof(SmallPresets))]
    public void VaeDecoderTurnsLatentsIntoAnImageEightTimesLarger(string preset)
    {
        var e = Table[preset];
        using var s = Ort.Open(Component(preset, "vae_decoder"));
        AssertSignature(s.InputMetadata, ("latent_sample", e.Float, [-1, 4, -1, -1]));
        AssertSignature(s.OutputMetadata, ("sample", e.Float, [-1, 3, -1, -1]));
        var r = Ort.Run(s, Ort.Input(s, "latent_sample", [2, 4, 8, 8], Ort.Random(2 * 4 * 64, 4, 3f)));
        var image = r["sample"];
        AssertFinite(image, [2, 3, 64, 64]);
        double mean = image.Values.Average(v => (double)v);
        double std = Math.Sqrt(image.Values.Average(v => (v - mean) * (v - mean)));
        Assert.InRange(std, 1e-3, 10); // an image with contrast, not a constant
    }

    [Theory]
    [MemberData(nameof(SmallPresets))]
    public void VaeEncoderTurnsAnImageIntoLatentsEightTimesSmaller(string preset)
    {
        var e = Table[preset];
        using var s = Ort.Open(Component(preset, "vae_encoder"));
        AssertSignature(s.InputMetadata, ("sample", e.Float, [-1, 3, -1, -1]));
        AssertSignature(s.OutputMetadata, ("latent_sample", e.Float, [-1, 4, -1, -1]));
        var r = Ort.Run(s, Ort.Input(s, "sample", [1, 3, 64, 48], Ort.Random(3 * 64 * 48, 5)));
        AssertFinite(r["latent_sample"], [1, 4, 8, 6]);
    }

    private string Component(string preset, string component) => Path.Combine(models.PathOf(preset), component, "model.onnx");

    /// <summary>Two tokenised prompts as a pipeline would feed them: BOS, a few tokens, EOS padding.</summary>
    private float[] Prompts(string preset)
    {
        var vocab = System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, int>>(
            File.ReadAllText(Path.Combine(models.PathOf(preset), "tokenizer", "vocab.json")))!;
        int bos = vocab["<|startoftext|>"], eos = vocab["<|endoftext|>"];
        var ids = new float[2 * 77];
        Array.Fill(ids, eos);
        ids[0] = bos;
        ids[77] = bos;
        string[] words = ["photo</w>", "of</w>", "a</w>", "red</w>", "cat</w>"];
        for (int i = 0; i < words.Length; i++)
            ids[77 + 1 + i] = vocab[words[i]];
        return ids;
    }

    private static void AssertSignature(IReadOnlyDictionary<string, NodeMetadata> actual, params (string Name, Type Type, int[] Dims)[] expected)
    {
        Assert.Equal(expected.Select(x => x.Name), actual.Keys);
        foreach (var (name, type, dims) in expected)
        {
            Assert.Equal(type, actual[name].ElementType);
            Assert.Equal(dims, actual[name].Dimensions);
        }
    }

    private static void AssertFinite((float[] Values, int[] Shape) output, int[] shape)
    {
        Assert.Equal(shape, output.Shape);
        Assert.All(output.Values, v => Assert.True(float.IsFinite(v)));
        Assert.Contains(output.Values, v => v != 0);
    }
}
