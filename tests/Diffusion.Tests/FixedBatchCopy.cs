using Google.Protobuf;
using RenderFarm.ModelBuilder.Onnx;

namespace RenderFarm.Diffusion.Tests;

/// <summary>
/// A copy of a model directory whose components' batch dimension is fixed, as a static export's is (every input and
/// output but the timestep), deleted when disposed.
/// </summary>
internal sealed class FixedBatchCopy : IDisposable
{
    /// <param name="source">The model directory to copy.</param>
    /// <param name="fixedBatches">Each component folder (unet, controlnet, vae_decoder, …) and the batch it is fixed to.</param>
    public FixedBatchCopy(string source, params (string Component, long Batch)[] fixedBatches)
    {
        Directory = System.IO.Directory.CreateTempSubdirectory("renderfarm-fixed-batch").FullName;
        foreach (var file in System.IO.Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(Directory, Path.GetRelativePath(source, file));
            System.IO.Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
        foreach (var (component, batch) in fixedBatches)
        {
            var path = Path.Combine(Directory, component, "model.onnx");
            var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(path));
            foreach (var value in model.Graph.Input.Concat(model.Graph.Output).Where(v => v.Name != "timestep"))
            {
                value.Type.TensorType.Shape.Dim[0] = new TensorShapeProto.Types.Dimension { DimValue = batch };
            }
            File.WriteAllBytes(path, model.ToByteArray());
        }
    }

    public string Directory { get; }

    public void Dispose()
    {
        try { System.IO.Directory.Delete(Directory, recursive: true); } catch (IOException) { }
    }
}
