using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using RenderFarm.Diffusion.Schedulers;

namespace RenderFarm.Diffusion.Models;

/// <summary>
/// Classifier-free guidance and one <see cref="LinearStep"/> as a small ONNX graph, run by ONNX Runtime on the device
/// the UNet runs on: it reads the UNet's output where the UNet wrote it and writes the next step's UNet input where
/// the UNet reads it, so the latents never leave the device between steps. Its inputs are the UNet output
/// ([rows, C, h, w], the UNet's element type), the sample, the last three steps' d and fresh noise ([images, C, h, w],
/// float32) and <see cref="Coefficients"/> float32 values; its outputs the next sample, this step's d and the next
/// UNet input (scaled, repeated for the guidance rows, followed by an inpainting UNet's constant channels, in the UNet's
/// input type). A graph has only the
/// <see cref="StepTerms"/> its step uses, since each element-wise node is a kernel launch on a GPU (an Euler step with
/// guidance is 16 nodes). One session per element types, guidance and terms (<see cref="DeviceGraphs"/>).
/// </summary>
internal static class StepGraph
{
    /// <summary>Coefficients, in the order the graph reads them.</summary>
    public const int Coefficients = 17;

    public const string OutputName = "output", SampleName = "sample", PreviousName = "previous", NoiseName = "noise", CoefficientsName = "coefficients";

    /// <summary>The d of two and three steps back (LMS), [images, C, h, w] float32 like <see cref="PreviousName"/>'s.</summary>
    public const string SecondPreviousName = "second_previous", ThirdPreviousName = "third_previous";
    public const string NextSampleName = "next_sample", ReportedName = "reported", ModelInputName = "model_input";

    /// <summary>An inpainting blend's inputs (<see cref="StepTerms.Blend"/>): init latents, their noise, masks [images, 1, h, w].</summary>
    public const string InitName = "init", InitNoiseName = "init_noise", MaskName = "mask";

    /// <summary>
    /// The UNet input's constant channels after the latents (<see cref="StepTerms.InputChannels"/>), [rows, E, h, w] in
    /// the UNet's input type. Its dimensions have names of their own: a graph without the term binds any 4-d tensor of
    /// that type there.
    /// </summary>
    public const string InputChannelsName = "input_channels";

    /// <summary>
    /// With <see cref="StepTerms.InputChannels"/>, a second output: the next input's latent channels alone, [rows, C, h,
    /// w] in the UNet's input type, which is what a ControlNet beside an inpainting UNet reads.
    /// </summary>
    public const string LatentInputName = "latent_input";

    /// <summary>The session stepping a UNet of these element types, with or without guidance rows, with <paramref name="terms"/>.</summary>
    public static InferenceSession Session(DeviceGraphs graphs, TensorElementType outputType, TensorElementType inputType, bool guided, StepTerms terms) =>
        graphs.Session($"step {outputType} {inputType} {guided} {terms}", () => Model(outputType, inputType, guided, terms));

    /// <summary>Writes <paramref name="step"/>, the guidance scale and the next step's input scale into the graph's coefficient order.</summary>
    public static void WriteCoefficients(LinearStep step, float guidanceScale, float nextInputScale, Span<float> destination,
        (float Original, float Noise)? blend = null)
    {
        destination[0] = guidanceScale;
        destination[1] = step.OriginalFromSample;
        destination[2] = step.OriginalFromOutput;
        destination[3] = step.ClipRange;
        destination[4] = step.ReportedFromOriginal;
        destination[5] = step.ReportedFromSample;
        destination[6] = step.NextFromSample;
        destination[7] = step.NextFromReported;
        destination[8] = step.NextFromPrevious;
        destination[9] = step.NextFromOutput;
        destination[10] = step.NextFromNoise;
        destination[11] = nextInputScale;
        destination[12] = -step.ClipRange;
        (destination[13], destination[14]) = blend ?? (1f, 0f);
        destination[15] = step.NextFromSecondPrevious;
        destination[16] = step.NextFromThirdPrevious;
    }

    /// <summary>
    /// The ONNX model (opset 17, no initializers) for UNet outputs of <paramref name="outputType"/> and inputs of
    /// <paramref name="inputType"/>, with the terms <paramref name="terms"/> names (the others are taken as 0, and a
    /// graph without them still has their inputs, unread, so one binding's names fit every graph).
    /// </summary>
    internal static byte[] Model(TensorElementType outputType, TensorElementType inputType, bool guided, StepTerms terms)
    {
        var graph = new OnnxGraphWriter("scheduler_step");
        string[] rows = ["rows", "channels", "height", "width"], images = ["images", "channels", "height", "width"];
        graph.Input(OutputName, outputType, rows);
        graph.Input(SampleName, TensorElementType.Float, images);
        graph.Input(PreviousName, TensorElementType.Float, images);
        graph.Input(SecondPreviousName, TensorElementType.Float, images);
        graph.Input(ThirdPreviousName, TensorElementType.Float, images);
        graph.Input(NoiseName, TensorElementType.Float, images);
        graph.Input(CoefficientsName, TensorElementType.Float, [Coefficients, 1, 1, 1]);
        graph.Input(InitName, TensorElementType.Float, images);
        graph.Input(InitNoiseName, TensorElementType.Float, images);
        graph.Input(MaskName, TensorElementType.Float, ["images", 1, "height", "width"]);
        graph.Input(InputChannelsName, inputType, ["input_channel_rows", "extra_channels", "input_channel_height", "input_channel_width"]);

        // One [1, 1, 1, 1] tensor per coefficient: they broadcast over the latents.
        var c = graph.Node("Split", [CoefficientsName], Coefficients, ("axis", 0));
        string Scale(string value, int coefficient) => graph.Node("Mul", [value, c[coefficient]]);
        string Sum(string? name, params string[] values)
        {
            string sum = values[0];
            for (int i = 1; i < values.Length; i++)
            {
                sum = i == values.Length - 1 && name is not null ? graph.Node("Add", [sum, values[i]], name) : graph.Node("Add", [sum, values[i]]);
            }
            return sum;
        }
        bool Has(StepTerms term) => (terms & term) != 0;

        string output = outputType == TensorElementType.Float ? OutputName : graph.Node("Cast", [OutputName], ("to", (long)TensorElementType.Float));
        string guidedOutput = output;
        if (guided)
        {
            // Rows are [negatives; positives]: ε = ε₋ + g·(ε₊ − ε₋).
            var halves = graph.Node("Split", [output], 2, ("axis", 0));
            guidedOutput = graph.Node("Add", [halves[0], Scale(graph.Node("Sub", [halves[1], halves[0]]), 0)]);
        }
        // x₀, clipped, then d: whichever is last is the output.
        bool clip = Has(StepTerms.Clip), mix = Has(StepTerms.Mix);
        string original = Sum(clip || mix ? null : ReportedName, Scale(SampleName, 1), Scale(guidedOutput, 2));
        if (clip)
        {
            original = graph.Node("Max", [graph.Node("Min", [original, c[3]]), c[12]], mix ? null : ReportedName);
        }
        if (mix)
        {
            Sum(ReportedName, Scale(original, 4), Scale(SampleName, 5));
        }
        List<string> next = [Scale(SampleName, 6), Scale(ReportedName, 7)];
        if (Has(StepTerms.Previous)) next.Add(Scale(PreviousName, 8));
        if (Has(StepTerms.SecondPrevious)) next.Add(Scale(SecondPreviousName, 15));
        if (Has(StepTerms.ThirdPrevious)) next.Add(Scale(ThirdPreviousName, 16));
        if (Has(StepTerms.Output)) next.Add(Scale(guidedOutput, 9));
        if (Has(StepTerms.Noise)) next.Add(Scale(NoiseName, 10));
        if (Has(StepTerms.Blend))
        {
            // Inpainting: x' = known + m·(x' − known), known = a·init + b·noise: (1 − m)·known + m·x' without a constant 1.
            string stepped = Sum(null, [.. next]);
            string known = Sum(null, Scale(InitName, 13), Scale(InitNoiseName, 14));
            graph.Node("Add", [known, graph.Node("Mul", [MaskName, graph.Node("Sub", [stepped, known])])], NextSampleName);
        }
        else
        {
            Sum(NextSampleName, [.. next]);
        }
        // The next input's latent rows: scaled, repeated for the guidance rows, cast; the last of them writes the bound
        // buffer, or with constant channels the latent input, which they then follow in the bound buffer.
        bool channels = Has(StepTerms.InputChannels), cast = inputType != TensorElementType.Float;
        string latentRows = channels ? LatentInputName : ModelInputName;
        string modelRows = graph.Node("Mul", [NextSampleName, c[11]], guided || cast ? null : latentRows);
        if (guided)
        {
            modelRows = graph.Node("Concat", [modelRows, modelRows], cast ? null : latentRows, ("axis", 0));
        }
        if (cast)
        {
            graph.Node("Cast", [modelRows], latentRows, ("to", (long)inputType));
        }
        if (channels)
        {
            graph.Node("Concat", [LatentInputName, InputChannelsName], ModelInputName, ("axis", 1));
        }

        graph.Output(NextSampleName, TensorElementType.Float, images);
        graph.Output(ReportedName, TensorElementType.Float, images);
        graph.Output(ModelInputName, inputType, ["rows", "input_channels", "height", "width"]);
        if (channels)
        {
            graph.Output(LatentInputName, inputType, rows);
        }
        return graph.Encode();
    }
}
