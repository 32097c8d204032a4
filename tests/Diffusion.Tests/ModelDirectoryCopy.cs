namespace RenderFarm.Diffusion.Tests;

/// <summary>A copy of a model directory for a test to change, deleted when disposed.</summary>
internal sealed class ModelDirectoryCopy : IDisposable
{
    /// <param name="source">The model directory to copy.</param>
    /// <param name="replaced">
    /// Component folders whose files come from another of the source's folders, e.g. ("unet", "controlnet"): the
    /// residual UNet as the model's own.
    /// </param>
    public ModelDirectoryCopy(string source, params (string Component, string From)[] replaced)
    {
        Directory = System.IO.Directory.CreateTempSubdirectory("renderfarm-model-copy").FullName;
        foreach (var file in System.IO.Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories))
        {
            var relative = Path.GetRelativePath(source, file);
            var folder = relative.Split(Path.DirectorySeparatorChar)[0];
            if (replaced.Any(r => r.Component == folder)) continue;
            Copy(file, relative);
            foreach (var (component, _) in replaced.Where(r => r.From == folder))
                Copy(file, Path.Combine(component, Path.GetRelativePath(folder, relative)));
        }
    }

    private void Copy(string file, string relative)
    {
        var target = Path.Combine(Directory, relative);
        System.IO.Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        File.Copy(file, target);
    }

    public string Directory { get; }

    /// <summary>
    /// Fixes each component's batch dimension, as a static export's is (every input and output but the timestep).
    /// </summary>
    /// <param name="fixedBatches">Each component folder (unet, controlnet, vae_decoder, …) and the batch it is fixed to.</param>
    public ModelDirectoryCopy FixBatches(params (string Component, long Batch)[] fixedBatches)
    {
        foreach (var (component, batch) in fixedBatches)
        {
            RenderFarm.ModelBuilder.StaticBatch.Fix(Path.Combine(Directory, component, "model.onnx"), batch);
        }
        return this;
    }

    public void Dispose()
    {
        try { System.IO.Directory.Delete(Directory, recursive: true); } catch (IOException) { }
    }
}
