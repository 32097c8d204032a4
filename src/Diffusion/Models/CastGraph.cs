using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace RenderFarm.Diffusion.Models;

/// <summary>
/// A [rows, channels, height, width] tensor cast to another element type where the models run: the UNet's input as a
/// ControlNet of another element type reads it (a float16 ControlNet beside a float32 UNet, or the other way round),
/// so that its sample need not cross to the host and back each step.
/// </summary>
internal static class CastGraph
{
    public const string InputName = "input";
    public const string OutputName = "output";

    /// <summary>The session casting <paramref name="from"/> to <paramref name="to"/>.</summary>
    public static InferenceSession Session(DeviceGraphs graphs, TensorElementType from, TensorElementType to) =>
        graphs.Session($"cast {from} {to}", () => Model(from, to));

    internal static byte[] Model(TensorElementType from, TensorElementType to)
    {
        var graph = new OnnxGraphWriter("cast");
        object[] dims = ["rows", "channels", "height", "width"];
        graph.Input(InputName, from, dims);
        graph.Node("Cast", [InputName], OutputName, ("to", (long)to));
        graph.Output(OutputName, to, dims);
        return graph.Encode();
    }
}
