using RenderFarm.Diffusion.Upscaling;
using RenderFarm.ModelBuilder;
using RenderFarm.ModelBuilder.Upscalers;

namespace RenderFarm.Diffusion.Tests;

/// <summary>
/// An upscaler folder as workers have it (<c>x4/model.onnx</c>: the tiny ×4 RRDBNet, <c>x2/model.onnx</c>: the tiny ×2)
/// and the tiny model loaded with it, written once per test class.
/// </summary>
public sealed class UpscalerFixture : IDisposable
{
    public UpscalerFixture()
    {
        Root = Directory.CreateTempSubdirectory("renderfarm-upscalers").FullName;
        UpscalerPresets.Write("rrdb-tiny-x4", Path.Combine(Root, "upscalers", "x4"), seed: 3);
        UpscalerPresets.Write("rrdb-tiny-x2", Path.Combine(Root, "upscalers", "x2"), seed: 4);
        ModelPresets.Write("tiny", Path.Combine(Root, "tiny"));
        Library = new UpscalerLibrary(Path.Combine(Root, "upscalers"));
        Pipeline = StableDiffusionPipeline.Load(Path.Combine(Root, "tiny"), extensions: new ModelExtensions { Upscalers = Library });
    }

    public string Root { get; }

    public UpscalerLibrary Library { get; }

    public StableDiffusionPipeline Pipeline { get; }

    public void Dispose()
    {
        Pipeline.Dispose();
        Library.Dispose();
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
