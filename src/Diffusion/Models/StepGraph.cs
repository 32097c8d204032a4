using System.Text;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using RenderFarm.Diffusion.Schedulers;

namespace RenderFarm.Diffusion.Models;

/// <summary>
/// Classifier-free guidance and one <see cref="LinearStep"/> as a small ONNX graph, run by ONNX Runtime on the device
/// the UNet runs on: it reads the UNet's output where the UNet wrote it and writes the next step's UNet input where
/// the UNet reads it, so the latents never leave the device between steps. Its inputs are the UNet output
/// ([rows, C, h, w], the UNet's element type), the sample, the previous step's d and fresh noise ([images, C, h, w],
/// float32) and <see cref="Coefficients"/> float32 values; its outputs the next sample, this step's d and the next
/// UNet input (scaled, repeated for the guidance rows, in the UNet's input type). One session per element types and
/// guidance, built once per pipeline.
/// </summary>
internal sealed class StepGraph : IDisposable
{
    /// <summary>Coefficients, in the order the graph reads them.</summary>
    public const int Coefficients = 12;

    public const string OutputName = "output", SampleName = "sample", PreviousName = "previous", NoiseName = "noise", CoefficientsName = "coefficients";
    public const string NextSampleName = "next_sample", ReportedName = "reported", ModelInputName = "model_input";

    private readonly Func<SessionOptions> _sessionOptions;
    private readonly Dictionary<(TensorElementType, TensorElementType, bool), InferenceSession> _sessions = [];
    private readonly Lock _lock = new();
    private long _runs;
    private long _runTicks;

    /// <param name="sessionOptions">Options for each session: the UNet's device and provider (no CUDA graph: the step runs apart from the UNet's).</param>
    public StepGraph(Func<SessionOptions> sessionOptions) => _sessionOptions = sessionOptions;

    /// <summary>The session stepping a UNet of these element types, with or without guidance rows.</summary>
    public InferenceSession Session(TensorElementType outputType, TensorElementType inputType, bool guided)
    {
        lock (_lock)
        {
            var key = (outputType, inputType, guided);
            if (!_sessions.TryGetValue(key, out var session))
            {
                using var options = _sessionOptions();
                _sessions[key] = session = new InferenceSession(Model(outputType, inputType, guided), options);
            }
            return session;
        }
    }

    /// <summary>Runs of the step graph and the time in them.</summary>
    public ComponentStatistics Statistics =>
        new("scheduler_step", Interlocked.Read(ref _runs), System.Diagnostics.Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _runTicks)));

    /// <summary>One step: <paramref name="binding"/> on <paramref name="session"/>, timed.</summary>
    public void Run(InferenceSession session, RunOptions runOptions, OrtIoBinding binding)
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            session.RunWithBinding(runOptions, binding);
        }
        finally
        {
            Interlocked.Add(ref _runTicks, System.Diagnostics.Stopwatch.GetTimestamp() - start);
            Interlocked.Increment(ref _runs);
        }
    }

    /// <summary>Writes <paramref name="step"/>, the guidance scale and the next step's input scale into the graph's coefficient order.</summary>
    public static void WriteCoefficients(LinearStep step, float guidanceScale, float nextInputScale, Span<float> destination)
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
    }

    /// <summary>The ONNX model (opset 17, no initializers) for UNet outputs of <paramref name="outputType"/> and inputs of <paramref name="inputType"/>.</summary>
    internal static byte[] Model(TensorElementType outputType, TensorElementType inputType, bool guided)
    {
        var graph = new Graph();
        string[] rows = ["rows", "channels", "height", "width"], images = ["images", "channels", "height", "width"];
        graph.Input(OutputName, outputType, rows);
        graph.Input(SampleName, TensorElementType.Float, images);
        graph.Input(PreviousName, TensorElementType.Float, images);
        graph.Input(NoiseName, TensorElementType.Float, images);
        graph.Input(CoefficientsName, TensorElementType.Float, [Coefficients, 1, 1, 1]);

        // One [1, 1, 1, 1] tensor per coefficient: they broadcast over the latents.
        var c = graph.Node("Split", [CoefficientsName], Coefficients, ("axis", 0));
        string Scale(string value, int coefficient) => graph.Node("Mul", [value, c[coefficient]]);
        string Sum(params string[] values) => values.Skip(1).Aggregate(values[0], (sum, value) => graph.Node("Add", [sum, value]));

        string output = outputType == TensorElementType.Float ? OutputName : graph.Node("Cast", [OutputName], ("to", (long)TensorElementType.Float));
        string guidedOutput = output;
        if (guided)
        {
            // Rows are [negatives; positives]: ε = ε₋ + g·(ε₊ − ε₋).
            var halves = graph.Node("Split", [output], 2, ("axis", 0));
            guidedOutput = graph.Node("Add", [halves[0], Scale(graph.Node("Sub", [halves[1], halves[0]]), 0)]);
        }
        string original = Sum(Scale(SampleName, 1), Scale(guidedOutput, 2));
        string clipped = graph.Node("Max", [graph.Node("Min", [original, c[3]]), graph.Node("Neg", [c[3]])]);
        graph.Node("Add", [Scale(clipped, 4), Scale(SampleName, 5)], ReportedName);
        string next = Sum(Scale(SampleName, 6), Scale(ReportedName, 7), Scale(PreviousName, 8), Scale(guidedOutput, 9), Scale(NoiseName, 10));
        graph.Node("Identity", [next], NextSampleName);
        string scaled = Scale(NextSampleName, 11);
        string modelRows = guided ? graph.Node("Concat", [scaled, scaled], ("axis", 0)) : scaled;
        if (inputType == TensorElementType.Float)
        {
            graph.Node("Identity", [modelRows], ModelInputName);
        }
        else
        {
            graph.Node("Cast", [modelRows], ModelInputName, ("to", (long)inputType));
        }

        graph.Output(NextSampleName, TensorElementType.Float, images);
        graph.Output(ReportedName, TensorElementType.Float, images);
        graph.Output(ModelInputName, inputType, rows);
        return graph.Encode();
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var session in _sessions.Values) session.Dispose();
            _sessions.Clear();
        }
    }

    /// <summary>Just enough of ONNX's protobuf encoding (onnx.proto field numbers) for this graph.</summary>
    private sealed class Graph
    {
        private readonly List<byte[]> _nodes = [], _inputs = [], _outputs = [];
        private int _values;

        public void Input(string name, TensorElementType type, object[] dims) => _inputs.Add(ValueInfo(name, type, dims));

        public void Output(string name, TensorElementType type, object[] dims) => _outputs.Add(ValueInfo(name, type, dims));

        public string Node(string op, string[] inputs, params (string Name, long Value)[] attributes) => Node(op, inputs, 1, attributes)[0];

        public string[] Node(string op, string[] inputs, int outputs, params (string Name, long Value)[] attributes)
        {
            var names = Enumerable.Range(0, outputs).Select(_ => $"v{_values++}").ToArray();
            Add(op, inputs, names, attributes);
            return names;
        }

        public void Node(string op, string[] inputs, string output, params (string Name, long Value)[] attributes) => Add(op, inputs, [output], attributes);

        private void Add(string op, string[] inputs, string[] outputs, (string Name, long Value)[] attributes)
        {
            var node = new Proto();
            foreach (var input in inputs) node.String(1, input);
            foreach (var output in outputs) node.String(2, output);
            node.String(3, $"{op}_{_nodes.Count}");
            node.String(4, op);
            foreach (var (name, value) in attributes)
            {
                node.Message(5, new Proto().String(1, name).Varint(3, value).Varint(20, 2)); // AttributeProto INT
            }
            _nodes.Add(node.ToArray());
        }

        private static byte[] ValueInfo(string name, TensorElementType type, object[] dims)
        {
            var shape = new Proto();
            foreach (var dim in dims)
            {
                shape.Message(1, dim is string param ? new Proto().String(2, param) : new Proto().Varint(1, Convert.ToInt64(dim)));
            }
            var tensor = new Proto().Varint(1, (long)type).Message(2, shape);
            return new Proto().String(1, name).Message(2, new Proto().Message(1, tensor)).ToArray();
        }

        public byte[] Encode()
        {
            var graph = new Proto();
            foreach (var node in _nodes) graph.Bytes(1, node);
            graph.String(2, "scheduler_step");
            foreach (var input in _inputs) graph.Bytes(11, input);
            foreach (var output in _outputs) graph.Bytes(12, output);
            return new Proto()
                .Varint(1, 8) // ir_version
                .String(2, "RenderFarm")
                .Bytes(7, graph.ToArray())
                .Message(8, new Proto().String(1, "").Varint(2, 17)) // opset_import: ai.onnx 17
                .ToArray();
        }
    }

    private sealed class Proto
    {
        private readonly MemoryStream _bytes = new();

        public Proto Varint(int field, long value) => Tag(field, 0).Raw((ulong)value);

        public Proto String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

        public Proto Message(int field, Proto message) => Bytes(field, message.ToArray());

        public Proto Bytes(int field, byte[] value)
        {
            Tag(field, 2).Raw((ulong)value.Length);
            _bytes.Write(value);
            return this;
        }

        public byte[] ToArray() => _bytes.ToArray();

        private Proto Tag(int field, int wireType) => Raw((ulong)((field << 3) | wireType));

        private Proto Raw(ulong value)
        {
            for (; value >= 0x80; value >>= 7) _bytes.WriteByte((byte)(value | 0x80));
            _bytes.WriteByte((byte)value);
            return this;
        }
    }
}
