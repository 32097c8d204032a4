using RenderFarm.Diffusion.ControlNets;
using RenderFarm.ModelBuilder;

namespace RenderFarm.Diffusion.Tests;

/// <summary>
/// A test class's model directory (a preset whose controlnet/ UNet takes residuals) and its ControlNet library, written
/// once into a temporary folder, with a pipeline loaded over both.
/// </summary>
public abstract class ControlNetModels : IDisposable
{
    /// <param name="preset">The model's preset.</param>
    /// <param name="prefix">The temporary folder's name prefix.</param>
    /// <param name="controlNets">Each ControlNet's library name, the preset it is made for, and its weights' seed.</param>
    protected ControlNetModels(string preset, string prefix, params (string Name, string For, ulong Seed)[] controlNets)
    {
        Root = Directory.CreateTempSubdirectory(prefix).FullName;
        ModelPresets.Write(preset, ModelDirectory);
        foreach (var (name, forPreset, seed) in controlNets)
        {
            ControlNetWriter.Write(ModelPresets.Get(forPreset), Path.Combine(Root, "controlnets", name), seed);
        }
        Library = new ControlNetLibrary(Path.Combine(Root, "controlnets"));
        Pipeline = StableDiffusionPipeline.Load(ModelDirectory, new DiffusionOptions(), new ModelExtensions { ControlNets = Library });
    }

    public string Root { get; }

    public string ModelDirectory => Path.Combine(Root, "model");

    public ControlNetLibrary Library { get; }

    public StableDiffusionPipeline Pipeline { get; }

    public void Dispose()
    {
        Pipeline.Dispose();
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
        GC.SuppressFinalize(this);
    }
}
