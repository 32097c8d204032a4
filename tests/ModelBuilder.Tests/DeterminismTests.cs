namespace RenderFarm.ModelBuilder.Tests;

public class DeterminismTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("rf-determinism-").FullName;

    [Fact]
    public void WritingTinyTwiceWithTheSameSeedGivesByteIdenticalFiles()
    {
        ModelPresets.Write("tiny", Path.Combine(_root, "a"), seed: 7);
        ModelPresets.Write("tiny", Path.Combine(_root, "b"), seed: 7);
        var a = Files(Path.Combine(_root, "a"));
        var b = Files(Path.Combine(_root, "b"));
        Assert.Equal(a.Keys, b.Keys);
        Assert.Contains("unet/model.onnx", a.Keys);
        foreach (var name in a.Keys)
            Assert.True(a[name].AsSpan().SequenceEqual(b[name]), $"{name} differs between two writes with the same seed");
    }

    [Fact]
    public void ADifferentSeedGivesDifferentWeightsButTheSameGraphAndTokenizer()
    {
        ModelPresets.Write("tiny", Path.Combine(_root, "s0"), seed: 0);
        ModelPresets.Write("tiny", Path.Combine(_root, "s1"), seed: 1);
        var s0 = Files(Path.Combine(_root, "s0"));
        var s1 = Files(Path.Combine(_root, "s1"));
        foreach (var component in new[] { "text_encoder", "unet", "vae_decoder", "vae_encoder" })
        {
            var w0 = new OnnxWeights(Path.Combine(_root, "s0", component, "model.onnx"));
            var w1 = new OnnxWeights(Path.Combine(_root, "s1", component, "model.onnx"));
            Assert.Equal(w0.Names, w1.Names);
            Assert.Equal(w0.Model.Graph.Node, w1.Model.Graph.Node);
            string conv = w0.Names.First(n => n.EndsWith(".weight") && w0.Dims(n).Length >= 2);
            Assert.NotEqual(w0[conv], w1[conv]);
        }
        Assert.Equal(s0["tokenizer/vocab.json"], s1["tokenizer/vocab.json"]);
        Assert.Equal(s0["tokenizer/merges.txt"], s1["tokenizer/merges.txt"]);
    }

    private static Dictionary<string, byte[]> Files(string dir) =>
        Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal)
            .ToDictionary(f => Path.GetRelativePath(dir, f).Replace('\\', '/'), File.ReadAllBytes);

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }
}
