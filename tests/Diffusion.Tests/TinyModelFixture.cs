using RenderFarm.ModelBuilder;

namespace RenderFarm.Diffusion.Tests;

/// <summary>Writes the ModelBuilder "tiny" preset to a temporary directory once and loads a pipeline over it.</summary>
public sealed class TinyModelFixture : IDisposable
{
    public TinyModelFixture()
    {
        Directory = System.IO.Directory.CreateTempSubdirectory("renderfarm-tiny").FullName;
        ModelPresets.Write("tiny", Directory);
        Pipeline = StableDiffusionPipeline.Load(Directory);
    }

    public string Directory { get; }

    public StableDiffusionPipeline Pipeline { get; }

    /// <summary>A copy of the model directory the test may damage; deleted with the fixture.</summary>
    public string CopyModel()
    {
        var target = System.IO.Directory.CreateTempSubdirectory("renderfarm-tiny-copy").FullName;
        foreach (var file in System.IO.Directory.EnumerateFiles(Directory, "*", SearchOption.AllDirectories))
        {
            var destination = Path.Combine(target, Path.GetRelativePath(Directory, file));
            System.IO.Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
            File.Copy(file, destination);
        }
        _copies.Add(target);
        return target;
    }

    private readonly List<string> _copies = [];

    public void Dispose()
    {
        Pipeline.Dispose();
        foreach (var directory in _copies.Append(Directory))
        {
            try
            {
                System.IO.Directory.Delete(directory, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }
}
