using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace RenderFarm.Diffusion.Models;

/// <summary>
/// A step's ControlNet residuals summed where the models run: residual k = Σᵤ cᵤₖ · (ControlNet u's output k), in
/// float32 in the units' order (as the host sums them), cast to the type of the UNet's residual input k. Coefficient
/// cᵤₖ ([units · residuals, 1, 1, 1], unit-major) is what unit u's output k is multiplied by (its conditioning scale
/// where the export does not apply it, guess mode's per-block factors, else 1), or 0 when the unit does not steer the
/// step: every unit's outputs are always read, so a graph per set of ControlNets serves every step. A unit that reads the
/// second half of the rows (guess mode under guidance: the conditional rows) adds to those rows only, zeros to the first
/// half, as diffusers' pipeline pads its residuals.
/// </summary>
internal static class ResidualSumGraph
{
    public const string CoefficientsName = "coefficients";

    public static string InputName(int unit, int residual) => $"unit{unit}_{residual}";

    public static string OutputName(int residual) => $"residual{residual}";

    /// <summary>A unit's output element types (in residual order), and whether it reads the second half of the rows.</summary>
    public sealed record Unit(TensorElementType[] Types, bool SecondHalf = false)
    {
        public override string ToString() => string.Join(',', Types) + (SecondHalf ? " half" : "");
    }

    /// <summary>The session summing <paramref name="units"/>' outputs into residual inputs of <paramref name="residualTypes"/>.</summary>
    public static InferenceSession Session(DeviceGraphs graphs, IReadOnlyList<Unit> units, TensorElementType[] residualTypes) =>
        graphs.Session($"controlnet_sum {string.Join(';', units)} {string.Join(',', residualTypes)}", () => Model(units, residualTypes));

    internal static byte[] Model(IReadOnlyList<Unit> unitList, TensorElementType[] residualTypes)
    {
        int units = unitList.Count, residuals = residualTypes.Length;
        var graph = new OnnxGraphWriter("controlnet_sum");
        object[] Dims(int r, bool half = false) => [half ? "half_rows" : "rows", $"channels{r}", $"height{r}", $"width{r}"];
        for (int u = 0; u < units; u++)
        {
            for (int r = 0; r < residuals; r++) graph.Input(InputName(u, r), unitList[u].Types[r], Dims(r, unitList[u].SecondHalf));
        }
        graph.Input(CoefficientsName, TensorElementType.Float, [units * residuals, 1, 1, 1]);
        var c = units * residuals == 1 ? [CoefficientsName] : graph.Node("Split", [CoefficientsName], units * residuals, ("axis", 0));
        for (int r = 0; r < residuals; r++)
        {
            bool cast = residualTypes[r] != TensorElementType.Float;
            string? sum = null;
            for (int u = 0; u < units; u++)
            {
                string value = unitList[u].Types[r] == TensorElementType.Float
                    ? InputName(u, r)
                    : graph.Node("Cast", [InputName(u, r)], ("to", (long)TensorElementType.Float));
                bool last = u == units - 1 && !cast;
                bool half = unitList[u].SecondHalf;
                string scaled = graph.Node("Mul", [value, c[u * residuals + r]], last && sum is null && !half ? OutputName(r) : null);
                if (half)
                {
                    // Zeros for the first half's rows (ConstantOfShape's default: float32 0), the scaled residuals after them.
                    var zeros = graph.Node("ConstantOfShape", [graph.Node("Shape", [scaled])]);
                    scaled = graph.Node("Concat", [zeros, scaled], last && sum is null ? OutputName(r) : null, ("axis", 0));
                }
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
