using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace RenderFarm.ModelBuilder.Tests;

/// <summary>
/// Every small preset loads in ONNX Runtime with the diffusers ONNX export signatures and runs to finite outputs; sd15,
/// never written in tests, is held to the same signature table through its graphs.
/// </summary>
[Collection(ModelDirectoryCollection.Name)]
public class PresetSignatureTests(ModelDirectoryFixture models)
{
    /// <summary>What the design table says per preset: float type, timestep type, input_ids type, UNet channels, context.</summary>
    /// <param name="TimeCond">An LCM UNet's timestep_cond width (time_cond_proj_dim), or null.</param>
    /// <param name="TimeIds">Values per row of an SDXL UNet's time_ids: 6, the refiner's 5.</param>
    /// <param name="FirstEncoder">Whether text_encoder is written (the SDXL refiner has only text_encoder_2).</param>
    public sealed record Expectation(string Preset, Type Float, Type Timestep, Type Ids, int UNetIn, int Context, int Hidden, bool Sdxl, int? TimeCond = null,
        int TimeIds = 6, bool FirstEncoder = true);

    private static readonly Dictionary<string, Expectation> Table = new[]
    {
        new Expectation("tiny", typeof(float), typeof(float), typeof(int), 4, 32, 32, false),
        new Expectation("tiny-control", typeof(float), typeof(float), typeof(int), 4, 32, 32, false),
        new Expectation("tiny-taesd", typeof(float), typeof(float), typeof(int), 4, 32, 32, false),
        new Expectation("tiny-inpaint", typeof(float), typeof(float), typeof(int), 9, 32, 32, false),
        new Expectation("tiny-fp16", typeof(Float16), typeof(Float16), typeof(int), 4, 32, 32, false),
        new Expectation("tiny-int64-timestep", typeof(float), typeof(long), typeof(long), 4, 32, 32, false),
        new Expectation("tiny-sd2", typeof(float), typeof(float), typeof(int), 4, 1024, 1024, false),
        new Expectation("tiny-mha", typeof(float), typeof(float), typeof(int), 4, 32, 32, false),
        new Expectation("tiny-sdxl", typeof(float), typeof(float), typeof(int), 4, 64, 32, true),
        new Expectation("tiny-sdxl-control", typeof(float), typeof(float), typeof(int), 4, 64, 32, true),
        new Expectation("tiny-sdxl-refiner", typeof(float), typeof(float), typeof(int), 4, 32, 32, true, TimeIds: 5, FirstEncoder: false),
        new Expectation("tiny-lcm", typeof(float), typeof(float), typeof(int), 4, 32, 32, false, TimeCond: 16),
        new Expectation("tiny-turbo", typeof(float), typeof(float), typeof(int), 4, 1024, 1024, false),
        new Expectation("sd15", typeof(float), typeof(float), typeof(int), 4, 768, 768, false),
        new Expectation("sd15-fp16", typeof(Float16), typeof(Float16), typeof(int), 4, 768, 768, false),
        new Expectation("sd15-fp16-mha", typeof(Float16), typeof(Float16), typeof(int), 4, 768, 768, false),
    }.ToDictionary(e => e.Preset);

    public static TheoryData<string> FullSizePresets => new(ModelPresets.Names.Except(ModelPresets.SmallNames));

    public static TheoryData<string> SmallPresets => new(ModelPresets.SmallNames);

    public static TheoryData<string> SmallPresetsWithAFirstTextEncoder => new(ModelPresets.SmallNames.Where(p => Table[p].FirstEncoder));

    /// <summary>One graph input or output: name, element type as ONNX Runtime reports it, dims (-1 where symbolic).</summary>
    public sealed record Signature(string Name, Type Type, int[] Dims);

    /// <summary>The design table's inputs and outputs of one component of a preset, in graph order.</summary>
    public static (Signature[] Inputs, Signature[] Outputs) Expected(string preset, string component)
    {
        var e = Table[preset];
        const int sdxlEmbeds = 32, sdxlHiddenStates = 3; // tiny-sdxl: projection 32, embeddings + 2 layers
        var hiddenStates = Enumerable.Range(0, e.Sdxl ? sdxlHiddenStates : 0)
            .Select(i => new Signature($"hidden_states.{i}", e.Float, [-1, 77, e.Hidden]));
        return component switch
        {
            "text_encoder" => ([new("input_ids", e.Ids, [-1, 77])],
                [new("last_hidden_state", e.Float, [-1, 77, e.Hidden]), new("pooler_output", e.Float, [-1, e.Hidden]), .. hiddenStates]),
            "text_encoder_2" when e.Sdxl => ([new("input_ids", e.Ids, [-1, 77])],
                [new("text_embeds", e.Float, [-1, sdxlEmbeds]), new("last_hidden_state", e.Float, [-1, 77, e.Hidden]), .. hiddenStates]),
            "unet" => ([
                    new("sample", e.Float, [-1, e.UNetIn, -1, -1]),
                    new("timestep", e.Timestep, [-1]),
                    new("encoder_hidden_states", e.Float, [-1, -1, e.Context]),
                    .. e.Sdxl ? new Signature[] { new("text_embeds", e.Float, [-1, sdxlEmbeds]), new("time_ids", e.Float, [-1, e.TimeIds]) } : [],
                    .. e.TimeCond is int cond ? new Signature[] { new("timestep_cond", e.Float, [-1, cond]) } : [],
                ],
                [new("out_sample", e.Float, [-1, 4, -1, -1])]),
            "vae_decoder" => ([new("latent_sample", e.Float, [-1, 4, -1, -1])], [new("sample", e.Float, [-1, 3, -1, -1])]),
            "vae_encoder" => ([new("sample", e.Float, [-1, 3, -1, -1])], [new("latent_sample", e.Float, [-1, 4, -1, -1])]),
            _ => throw new ArgumentException($"{preset} has no component '{component}' in the design table"),
        };
    }

    [Fact]
    public void EveryPresetIsCoveredByTheSignatureTable() =>
        Assert.Equal(Table.Keys.Order(), ModelPresets.Names.Order());

    /// <summary>The full-size presets' weights (gigabytes) are never written in tests; their graphs alone carry the signatures.</summary>
    [Theory]
    [MemberData(nameof(FullSizePresets))]
    public void FullSizeGraphsHaveTheDesignTableSignaturesWithoutWritingWeights(string preset)
    {
        var graphs = ModelDirectoryWriter.BuildGraphs(ModelPresets.Get(preset));
        Assert.Equal(["text_encoder", "unet", "vae_decoder", "vae_encoder"], graphs.Select(g => g.Folder));
        foreach (var (folder, graph) in graphs)
        {
            var (inputs, outputs) = Expected(preset, folder);
            AssertSignature(Actual(graph.Inputs), inputs);
            AssertSignature(Actual(graph.Outputs), outputs);
        }
    }

    [Theory]
    [MemberData(nameof(SmallPresetsWithAFirstTextEncoder))]
    public void TextEncoderTakesInputIdsAndReturnsHiddenStatesAndPooledOutput(string preset)
    {
        var e = Table[preset];
        using var s = Ort.Open(Component(preset, "text_encoder"));
        AssertSignatures(s, Expected(preset, "text_encoder"));

        var r = Ort.Run(s, Ort.Input(s, "input_ids", [2, 77], Prompts(preset)));
        AssertFinite(r["last_hidden_state"], [2, 77, e.Hidden]);
        AssertFinite(r["pooler_output"], [2, e.Hidden]);
    }

    [Theory]
    [InlineData("tiny-sdxl")]
    [InlineData("tiny-sdxl-refiner")]
    public void SdxlSecondTextEncoderReturnsProjectedTextEmbedsAndEveryHiddenState(string preset)
    {
        using var s = Ort.Open(Component(preset, "text_encoder_2"));
        AssertSignatures(s, Expected(preset, "text_encoder_2"));
        var r = Ort.Run(s, Ort.Input(s, "input_ids", [2, 77], Prompts(preset)));
        AssertFinite(r["text_embeds"], [2, 32]);
        AssertFinite(r["hidden_states.1"], [2, 77, 32]);
        Assert.True(File.Exists(Path.Combine(models.PathOf(preset), "tokenizer_2", "vocab.json")));
        Assert.Equal(Table[preset].FirstEncoder, Directory.Exists(Path.Combine(models.PathOf(preset), "text_encoder")));
    }

    [Theory]
    [MemberData(nameof(SmallPresets))]
    public void UNetPredictsNoiseOfTheLatentShapeForAClassifierFreeGuidanceBatch(string preset)
    {
        var e = Table[preset];
        using var s = Ort.Open(Component(preset, "unet"));
        AssertSignatures(s, Expected(preset, "unet"));

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
                feed.Add(Ort.Input(s, "time_ids", [2, e.TimeIds], e.TimeIds == 6 ? [64, 64, 0, 0, 64, 64, 64, 64, 0, 0, 64, 64] : [64, 64, 0, 0, 6, 64, 64, 0, 0, 2.5f]));
            }
            if (e.TimeCond is int cond)
                feed.Add(Ort.Input(s, "timestep_cond", [2, cond], Ort.Random(2 * cond, 6)));
            var r = Ort.Run(s, feed.ToArray());
            AssertFinite(r["out_sample"], [2, 4, 8, 8]);
        }
    }

    [Theory]
    [MemberData(nameof(SmallPresets))]
    public void VaeDecoderTurnsLatentsIntoAnImageEightTimesLarger(string preset)
    {
        using var s = Ort.Open(Component(preset, "vae_decoder"));
        AssertSignatures(s, Expected(preset, "vae_decoder"));
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
        using var s = Ort.Open(Component(preset, "vae_encoder"));
        AssertSignatures(s, Expected(preset, "vae_encoder"));
        var r = Ort.Run(s, Ort.Input(s, "sample", [1, 3, 64, 48], Ort.Random(3 * 64 * 48, 5)));
        AssertFinite(r["latent_sample"], [1, 4, 8, 6]);
    }

    private string Component(string preset, string component) => Path.Combine(models.PathOf(preset), component, "model.onnx");

    /// <summary>Two tokenised prompts as a pipeline would feed them: BOS, a few tokens, EOS padding.</summary>
    private float[] Prompts(string preset)
    {
        var vocab = System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, int>>(
            File.ReadAllText(Path.Combine(models.PathOf(preset), Table[preset].FirstEncoder ? "tokenizer" : "tokenizer_2", "vocab.json")))!;
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

    private static void AssertSignatures(InferenceSession session, (Signature[] Inputs, Signature[] Outputs) expected)
    {
        AssertSignature(Actual(session.InputMetadata), expected.Inputs);
        AssertSignature(Actual(session.OutputMetadata), expected.Outputs);
    }

    private static Signature[] Actual(IReadOnlyDictionary<string, NodeMetadata> metadata) =>
        metadata.Select(kv => new Signature(kv.Key, kv.Value.ElementType, kv.Value.Dimensions)).ToArray();

    /// <summary>A graph's declared values in ONNX Runtime's terms: CLR element type, -1 for a symbolic dimension.</summary>
    private static Signature[] Actual(IReadOnlyList<Graph.GraphValue> values) =>
        values.Select(v => new Signature(v.Name, v.Type switch
        {
            Graph.ElementType.Float => typeof(float),
            Graph.ElementType.Float16 => typeof(Float16),
            Graph.ElementType.Int32 => typeof(int),
            Graph.ElementType.Int64 => typeof(long),
            _ => throw new NotSupportedException(v.Type.ToString()),
        }, v.Dims.Select(d => d.Param is null ? checked((int)d.Value!.Value) : -1).ToArray())).ToArray();

    private static void AssertSignature(Signature[] actual, Signature[] expected)
    {
        Assert.Equal(expected.Select(x => x.Name), actual.Select(x => x.Name));
        foreach (var (a, e) in actual.Zip(expected))
        {
            Assert.True(e.Type == a.Type, $"{e.Name}: element type {a.Type.Name}, expected {e.Type.Name}");
            Assert.True(e.Dims.SequenceEqual(a.Dims), $"{e.Name}: dims [{string.Join(", ", a.Dims)}], expected [{string.Join(", ", e.Dims)}]");
        }
    }

    private static void AssertFinite((float[] Values, int[] Shape) output, int[] shape)
    {
        Assert.Equal(shape, output.Shape);
        Assert.All(output.Values, v => Assert.True(float.IsFinite(v)));
        Assert.Contains(output.Values, v => v != 0);
    }
}
