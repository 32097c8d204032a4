namespace RenderFarm.ModelBuilder.Tests;

/// <summary>The <c>list</c> and <c>create</c> commands, run in-process over string writers (as the farm client's tests do).</summary>
public sealed class CliTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("rf-modelbuilder-cli-").FullName;
    private readonly StringWriter _out = new(), _error = new();

    [Fact]
    public void ListPrintsEveryPresetWithItsDescription()
    {
        Assert.Equal(0, Run("list"));
        var lines = _out.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(ModelPresets.Names.Concat(Upscalers.UpscalerPresets.Names), lines.Select(l => l.Split(' ', 2)[0]));
        foreach (var (line, description) in lines.Zip(ModelPresets.Definitions.Select(p => p.Description).Concat(Upscalers.UpscalerPresets.Definitions.Select(p => p.Description))))
            Assert.Contains(description, line);
        Assert.Empty(_error.ToString());
    }

    [Fact]
    public void UpscalerWritesModelOnnxIntoTheFolder()
    {
        var folder = Path.Combine(_root, "upscalers", "tiny4");
        Assert.Equal(0, Run("upscaler", "rrdb-tiny-x4", "--out", folder));
        Assert.True(File.Exists(Path.Combine(folder, "model.onnx")));
        Assert.Equal(1, Run("upscaler", "rrdb-tiny-x4", "--out", folder)); // exists: only with --force
        Assert.Equal(0, Run("upscaler", "rrdb-tiny-x4", "--out", folder, "--force"));
        Assert.Equal(2, Run("upscaler", "nope", "--out", folder));
    }

    [Fact]
    public void CreateWritesTheModelDirectoryWithTheGivenSeed()
    {
        string dir = Path.Combine(_root, "nested", "tiny");
        Assert.Equal(0, Run("create", "tiny", "--out", dir, "--seed", "5"));

        foreach (var file in new[] { "model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json", "tokenizer/merges.txt",
                     "text_encoder/model.onnx", "unet/model.onnx", "vae_decoder/model.onnx", "vae_encoder/model.onnx" })
            Assert.True(File.Exists(Path.Combine(dir, file)), $"{file} missing");
        Assert.Contains("wrote tiny (seed 5)", _out.ToString());
        string library = Path.Combine(_root, "library");
        ModelPresets.Write("tiny", library, seed: 5);
        Assert.Equal(File.ReadAllBytes(Path.Combine(library, "unet", "model.onnx")), File.ReadAllBytes(Path.Combine(dir, "unet", "model.onnx")));
    }

    [Fact]
    public void AnUnknownPresetIsAUsageErrorNamingTheValidOnesAndWritesNothing()
    {
        string dir = Path.Combine(_root, "out");
        Assert.Equal(2, Run("create", "sd99", "--out", dir));
        Assert.StartsWith("error: unknown preset 'sd99'; valid: tiny, ", _error.ToString());
        Assert.Empty(Directory.EnumerateFileSystemEntries(_root));
    }

    [Fact]
    public void ANonEmptyDirectoryIsLeftAloneWithoutForceAndReplacedWithIt()
    {
        string dir = Path.Combine(_root, "existing");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "keep.txt"), "mine");

        Assert.Equal(1, Run("create", "tiny", "--out", dir));
        Assert.Contains("is not empty; pass --force", _error.ToString());
        Assert.Equal(["keep.txt"], Directory.EnumerateFileSystemEntries(dir).Select(Path.GetFileName));
        Assert.Equal("mine", File.ReadAllText(Path.Combine(dir, "keep.txt")));
        Assert.Equal([dir], Directory.EnumerateFileSystemEntries(_root)); // no temporary sibling left behind

        Assert.Equal(0, Run("create", "tiny", "--out", dir, "--force"));
        Assert.False(File.Exists(Path.Combine(dir, "keep.txt")));
        Assert.True(File.Exists(Path.Combine(dir, "unet", "model.onnx")));
    }

    [Theory]
    [InlineData("create", "tiny")]
    [InlineData("create", "tiny", "--out", "x", "--seed", "-1")]
    [InlineData("create", "tiny", "--out", "x", "--frobnicate")]
    [InlineData("make", "tiny")]
    public void MalformedCommandsAreUsageErrors(params string[] args)
    {
        Assert.Equal(2, Run(args));
        Assert.StartsWith("error: ", _error.ToString());
        Assert.Contains("usage:", _error.ToString());
        Assert.False(Directory.Exists("x"), "a malformed command wrote its --out directory");
    }

    private int Run(params string[] args) => ModelBuilderCli.Run(args, _out, _error, CancellationToken.None);

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }
}
