using Microsoft.ML.OnnxRuntime;
using RenderFarm.ModelBuilder.Onnx;

namespace RenderFarm.ModelBuilder.Tests;

/// <summary>The same preset and seed give byte-identical files, inline or with external data; another seed other weights.</summary>
public class DeterminismTests(DeterminismTests.Writes writes) : IClassFixture<DeterminismTests.Writes>
{
    public static TheoryData<string> TinyPresets => PresetSignatureTests.SmallPresets;

    [Theory]
    [MemberData(nameof(TinyPresets))]
    public void WritingTwiceWithTheSameSeedGivesByteIdenticalFiles(string preset)
    {
        var a = Files(writes.Get(preset, seed: 7, copy: "a"));
        var b = Files(writes.Get(preset, seed: 7, copy: "b"));
        Assert.Equal(a.Keys, b.Keys);
        Assert.Contains("unet/model.onnx", a.Keys);
        foreach (var name in a.Keys)
            Assert.True(a[name].AsSpan().SequenceEqual(b[name]), $"{preset}: {name} differs between two writes with the same seed");
    }

    [Theory]
    [MemberData(nameof(TinyPresets))]
    public void ADifferentSeedGivesDifferentWeightsButTheSameGraphAndTokenizer(string preset)
    {
        string dir7 = writes.Get(preset, seed: 7, copy: "a"), dir8 = writes.Get(preset, seed: 8, copy: "a");
        var s7 = Files(dir7);
        var s8 = Files(dir8);
        Assert.Equal(s7.Keys, s8.Keys);
        foreach (var component in s7.Keys.Where(k => k.EndsWith("/model.onnx")).Select(Path.GetDirectoryName))
        {
            var w7 = new OnnxWeights(Path.Combine(dir7, component!, "model.onnx"));
            var w8 = new OnnxWeights(Path.Combine(dir8, component!, "model.onnx"));
            Assert.Equal(w7.Names, w8.Names);
            Assert.Equal(w7.Model.Graph.Node, w8.Model.Graph.Node);
            // Embeddings, linear and conv weights are drawn from the seed; norms (1/0) and constants are not.
            var random = w7.Names.Where(n => n.EndsWith(".weight") && w7.Dims(n).Length >= 2).ToArray();
            Assert.NotEmpty(random);
            Assert.All(random, n => Assert.False(w7[n].AsSpan().SequenceEqual(w8[n]), $"{component}/{n} did not change with the seed"));
        }
        foreach (var name in s7.Keys.Where(k => !k.EndsWith("/model.onnx")))
            Assert.True(s7[name].AsSpan().SequenceEqual(s8[name]), $"{preset}: {name} depends on the seed");
    }

    /// <summary>
    /// sd15 stores its weights in model.onnx_data; a zero threshold puts tiny's there too, so that layout is checked
    /// for determinism and against the inline model's outputs without writing gigabytes.
    /// </summary>
    [Fact]
    public void ExternalDataLayoutIsByteIdenticalAcrossWritesAndComputesWhatTheInlineModelDoes()
    {
        string inline = writes.Get("tiny", seed: 7, copy: "a");
        string first = writes.Get("tiny", seed: 7, copy: "external-a", externalDataThreshold: 0);
        string second = writes.Get("tiny", seed: 7, copy: "external-b", externalDataThreshold: 0);
        var a = Files(first);
        var b = Files(second);
        Assert.Equal(a.Keys, b.Keys);
        foreach (var name in a.Keys)
            Assert.True(a[name].AsSpan().SequenceEqual(b[name]), $"{name} differs between two external-data writes");

        foreach (var component in new[] { "text_encoder", "unet", "vae_decoder", "vae_encoder" })
        {
            Assert.Contains($"{component}/{OnnxModelWriter.ExternalDataFileName}", a.Keys);
            string externalPath = Path.Combine(first, component, "model.onnx"), inlinePath = Path.Combine(inline, component, "model.onnx");
            var external = new OnnxWeights(externalPath);
            var parameters = external.Model.Graph.Initializer.Where(t => !t.Name.StartsWith("const_", StringComparison.Ordinal)).ToArray();
            Assert.NotEmpty(parameters);
            Assert.All(parameters, t => Assert.Equal(TensorProto.Types.DataLocation.External, t.DataLocation));
            var inlineWeights = new OnnxWeights(inlinePath);
            Assert.All(parameters, t => Assert.Equal(inlineWeights[t.Name], external[t.Name]));

            using var inlineSession = Ort.Open(inlinePath);
            using var externalSession = Ort.Open(externalPath);
            var feed = RandomFeed(inlineSession);
            var expected = Ort.Run(inlineSession, feed);
            var actual = Ort.Run(externalSession, feed);
            Assert.Equal(expected.Keys, actual.Keys);
            foreach (var (output, value) in expected)
            {
                Assert.Equal(value.Shape, actual[output].Shape);
                Assert.Equal(value.Values, actual[output].Values); // same weights, same graph: bit-identical
            }
        }
    }

    /// <summary>Inputs of the model's declared types, symbolic dimensions fixed to small sizes, token ids in range.</summary>
    private static NamedOnnxValue[] RandomFeed(InferenceSession session)
    {
        var sizes = new Dictionary<string, int>
        {
            ["batch"] = 2, ["steps"] = 1, ["sequence"] = 77, ["height"] = 16, ["width"] = 16,
            ["latent_height"] = 2, ["latent_width"] = 2,
        };
        ulong seed = 1;
        return session.InputMetadata.Select(kv =>
        {
            int[] shape = kv.Value.Dimensions.Select((d, i) => d >= 0 ? d : sizes[kv.Value.SymbolicDimensions[i]]).ToArray();
            int count = shape.Aggregate(1, (x, y) => x * y);
            bool integer = kv.Value.ElementType == typeof(int) || kv.Value.ElementType == typeof(long);
            var values = integer
                ? Ort.Random(count, seed++).Select(v => MathF.Round(50 + 49 * v)).ToArray() // ids / timesteps 1..99
                : Ort.Random(count, seed++);
            return Ort.Input(session, kv.Key, shape, values);
        }).ToArray();
    }

    private static Dictionary<string, byte[]> Files(string dir) =>
        Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal)
            .ToDictionary(f => Path.GetRelativePath(dir, f).Replace('\\', '/'), File.ReadAllBytes);

    /// <summary>Model directories written once per (preset, seed, copy) and shared by the tests of this class.</summary>
    public sealed class Writes : IDisposable
    {
        private readonly string _root = Directory.CreateTempSubdirectory("rf-determinism-").FullName;
        private readonly Dictionary<string, Lazy<string>> _dirs = [];

        public string Get(string preset, ulong seed, string copy, long externalDataThreshold = OnnxModelWriter.ExternalDataThreshold)
        {
            string dir = Path.Combine(_root, $"{preset}-{seed}-{copy}");
            Lazy<string> write;
            lock (_dirs)
            {
                if (!_dirs.TryGetValue(dir, out write!))
                    _dirs[dir] = write = new Lazy<string>(() =>
                    {
                        ModelPresets.Write(preset, dir, new ModelWriteOptions { Seed = seed, ExternalDataThreshold = externalDataThreshold });
                        return dir;
                    });
            }
            return write.Value;
        }

        public void Dispose()
        {
            try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
        }
    }
}
