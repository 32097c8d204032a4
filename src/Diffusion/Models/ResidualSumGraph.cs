using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace RenderFarm.Diffusion.Models;

/// <summary>
/// A step's ControlNet residuals summed where the models run: residual k = Σᵤ cᵤₖ · (ControlNet u's output k), in
/// float32 in the units' order (as the host sums them), cast to the type of the UNet's residual input k. Coefficient
/// cᵤₖ ([units · residuals, 1, 1, 1], unit-major) is what unit u's output k is multiplied by (its conditioning scale
/// where the export does not apply it, guess mode's per-block factors, else 1), or 0 when the unit does not steer the
/// step: every unit's outputs are always read, so a graph per set of ControlNets serves every step.
/// </summary>
internal static class ResidualSumGraph
{
    public const string CoefficientsName = "coefficients";

    public static string InputName(int unit, int residual) => $"unit{unit}_{residual}";

    public static string OutputName(int residual) => $"residual{residual}";

    /// <summary>The session summing units whose outputs have <paramref name="unitTypes"/> into residual inputs of <paramref name="residualTypes"/>.</summary>
    public static InferenceSession Session(DeviceGraphs graphs, IReadOnlyList<TensorElementType[]> unitTypes, TensorElementType[] residualTypes) =>
        graphs.Session($"controlnet_sum {string.Join(';', unitTypes.Select(t => string.Join(',', t)))} {string.Join(',', residualTypes)}",
            () => Model(unitTypes, residualTypes));

    internal static byte[] Model(IReadOnlyList<TensorElementType[]> unitTypes, TensorElementType[] residualTypes)
    {
        int units = unitTypes.Count, residuals = residualTypes.Length;
        var graph = new OnnxGraphWriter("controlnet_sum");
        object[] Dims(int r) => ["rows", $"channels{r}", $"height{r}", $"width{r}"];
        for (int u = 0; u < units; u++)
        {
            for (int r = 0; r < residuals; r++) graph.Input(InputName(u, r), unitTypes[u][r], Dims(r));
        }
        graph.Input(CoefficientsName, TensorElementType.Float, [units * residuals, 1, 1, 1]);
        var c = units * residuals == 1 ? [CoefficientsName] : graph.Node("Split", [CoefficientsName], units * residuals, ("axis", 0));
        for (int r = 0; r < residuals; r++)
        {
            bool cast = residualTypes[r] != TensorElementType.Float;
            string? sum = null;
            for (int u = 0; u < units; u++)
            {
                string value = unitTypes[u][r] == TensorElementType.Float
                    ? InputName(u, r)
                    : graph.Node("Cast", [InputName(u, r)], ("to", (long)TensorElementType.Float));
                bool last = u == units - 1 && !cast;
                string scaled = graph.Node("Mul", [value, c[u * residuals + r]], last && sum is null ? OutputName(r) : null);
                sum = sum is null ? scaled : graph.Node("Add", [sum, scaled], last ? OutputName(r) : null);
            }
            if (cast)
            {
                graph.Node("Cast", [sum!], OutputName(r), ("to", (long)residualTypes[r]));
            }
            graph.Output(OutputName(r), residualTypes[r], Dims(r));
        }
        return graph.Encode();
    }
}
