using Google.Protobuf;
using RenderFarm.ModelBuilder.Onnx;

namespace RenderFarm.ModelBuilder;

/// <summary>
/// Turns a written component into a static-batch export, as one exported for TensorRT with fixed shapes is: the batch
/// dimension of every input and output but the timestep becomes <c>batch</c>. Only model.onnx is rewritten (its
/// external data, if any, is left as it is), so this is cheap even for a full-size UNet.
/// </summary>
public static class StaticBatch
{
    public static void Fix(string modelPath, long batch)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(modelPath));
        foreach (var value in model.Graph.Input.Concat(model.Graph.Output).Where(v => v.Name != "timestep"))
        {
            value.Type.TensorType.Shape.Dim[0] = new TensorShapeProto.Types.Dimension { DimValue = batch };
        }
        File.WriteAllBytes(modelPath, model.ToByteArray());
    }
}
