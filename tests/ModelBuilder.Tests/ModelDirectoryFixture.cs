using RenderFarm.ModelBuilder;

namespace RenderFarm.ModelBuilder.Tests;

/// <summary>Writes every small preset once per test run into a temporary directory.</summary>
public sealed class ModelDirectoryFixture : IDisposable
{
    private readonly Dictionary<string, string> _dirs = [];
    private readonly object _gate = new();

    public string Root { get; } = Directory.CreateTempSubdirectory("rf-modelbuilder-tests-").FullName;

    public string PathOf(string preset)
    {
        lock (_gate)
        {
            if (!_dirs.TryGetValue(preset, out var dir))
            {
                dir = Path.Combine(Root, preset);
                ModelPresets.Write(preset, dir);
                _dirs[preset] = dir;
            }
            return dir;
        }
    }

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
    }
}

[CollectionDefinition(Name)]
public sealed class ModelDirectoryCollection : ICollectionFixture<ModelDirectoryFixture>
{
    public const string Name = "model directories";
}
