using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using RenderFarm.Diffusion.Tensors;

namespace RenderFarm.Diffusion.Models;

/// <summary>
/// unet/model.onnx: sample [B, C, h, w], timestep (float32/float16/int64…, 0-d, [1] or [B]) and
/// encoder_hidden_states [B, L, H] → out_sample [B, C, h, w]. Element types, ranks and static dims are read from the
/// model. Inputs beyond these three (SDXL's text_embeds/time_ids, …) are reported in <see cref="ExtraInputs"/>, except
/// ControlNet residuals (<see cref="Residuals"/>), which change every step like the sample.
/// </summary>
internal sealed class UNet : IDisposable
{
    private readonly OnnxComponent _component;
    private readonly UNetPlacement _placement;
    private int _graphs; // CUDA graphs captured (ids 1.._graphs), at most _placement.MaxGraphs
    /// <summary>
    /// Prepared runs, most recently used first, per slot (one slot per model batch of a request, see
    /// <see cref="ModelBatching"/>): a worker alternates between full shards and a job's remainder.
    /// </summary>
    private readonly List<(int Slot, UNetRun Run)> _runs = [];
    internal const int KeptRuns = 2;

    /// <summary>The runs kept now (captured ones and the others), for tests of the cache.</summary>
    internal IReadOnlyList<UNetRun> Runs => _runs.Select(r => r.Run).ToArray();

    /// <param name="component">unet/model.onnx's session.</param>
    /// <param name="placement">Where the run's tensors live: host memory for the CPU provider, device buffers for GPU providers.</param>
    public UNet(OnnxComponent component, UNetPlacement? placement = null)
    {
        _component = component;
        _placement = placement ?? UNetPlacement.Host;
        (SampleName, var sample) = component.RequireInput("sample");
        component.RequireElementType(SampleName, sample, TensorElementType.Float, TensorElementType.Float16);
        component.RequireRank(SampleName, sample, 4);
        SampleType = sample.ElementDataType;
        InChannels = OnnxComponent.StaticDim(sample, 1);
        StaticBatch = OnnxComponent.StaticDim(sample, 0);
        StaticHeight = OnnxComponent.StaticDim(sample, 2);
        StaticWidth = OnnxComponent.StaticDim(sample, 3);

        (TimestepName, var timestep) = component.RequireInput("timestep");
        component.RequireElementType(TimestepName, timestep,
            TensorElementType.Float, TensorElementType.Float16, TensorElementType.Double, TensorElementType.Int64, TensorElementType.Int32);
        if (timestep.Dimensions.Length > 1)
        {
            throw component.Invalid($"'{TimestepName}' has rank {timestep.Dimensions.Length}; a scalar, [1] or [batch] is expected");
        }
        TimestepType = timestep.ElementDataType;
        TimestepRank = timestep.Dimensions.Length;
        TimestepStaticLength = OnnxComponent.StaticDim(timestep, 0);

        (HiddenName, var hidden) = component.RequireInput("encoder_hidden_states");
        component.RequireElementType(HiddenName, hidden, TensorElementType.Float, TensorElementType.Float16);
        component.RequireRank(HiddenName, hidden, 3);
        HiddenType = hidden.ElementDataType;
        HiddenSize = OnnxComponent.StaticDim(hidden, 2);

        (OutputName, var output) = component.RequireOutput("out_sample");
        component.RequireElementType(OutputName, output, TensorElementType.Float, TensorElementType.Float16);
        component.RequireRank(OutputName, output, 4);
        OutputType = output.ElementDataType;
        OutChannels = OnnxComponent.StaticDim(output, 1);

        Residuals = ControlResiduals.Read(component, Path.GetDirectoryName(Path.GetDirectoryName(component.Path))!);
        ExtraInputs = component.Inputs
            .Where(k => k.Key != SampleName && k.Key != TimestepName && k.Key != HiddenName && !ControlResiduals.IsResidualInput(k.Key))
            .ToDictionary(k => k.Key, k => k.Value);
    }

    /// <summary>The ControlNet residual inputs this UNet takes, or null (a plain UNet).</summary>
    public ControlResiduals? Residuals { get; }

    public string SampleName { get; }
    public TensorElementType SampleType { get; }
    public int? InChannels { get; }
    public int? StaticBatch { get; }
    public int? StaticHeight { get; }
    public int? StaticWidth { get; }
    public string TimestepName { get; }
    public TensorElementType TimestepType { get; }
    public int TimestepRank { get; }
    public int? TimestepStaticLength { get; }
    public string HiddenName { get; }
    public TensorElementType HiddenType { get; }
    public int? HiddenSize { get; }
    public string OutputName { get; }
    public TensorElementType OutputType { get; }
    public int? OutChannels { get; }
    /// <summary>Conditioning inputs beyond sample, timestep and encoder_hidden_states (SDXL: text_embeds, time_ids).</summary>
    public IReadOnlyDictionary<string, NodeMetadata> ExtraInputs { get; }

    /// <summary>
    /// The tensors of a denoising run of <paramref name="batch"/> rows (CFG rows included) with per-row
    /// <paramref name="conditions"/> (encoder_hidden_states and every extra input), reused by every step. Model batches
    /// of one request that step in turn take different <paramref name="slot"/>s, so each has runs of its own. The UNet
    /// owns the runs and keeps each slot's last <see cref="KeptRuns"/> shapes for later requests (buffers and binding reused).
    /// With CUDA graphs the first <see cref="UNetPlacement.MaxGraphs"/> shapes are captured, and their runs kept as long as
    /// the UNet (a graph replays its run's device buffers, and ONNX Runtime frees graphs only with the session); later
    /// shapes run uncaptured and are kept like any other run.
    /// </summary>
    public UNetRun Prepare(int batch, int channels, int height, int width, IReadOnlyList<UNetCondition> conditions, int slot = 0)
    {
        var missing = ExtraInputs.Keys.Append(HiddenName).Where(n => conditions.All(c => c.Name != n)).ToArray();
        if (missing.Length > 0)
        {
            throw new InvalidOperationException($"The unet needs {string.Join(", ", missing)}, which were not prepared.");
        }
        int found = _runs.FindIndex(r => r.Slot == slot && r.Run.Fits(batch, channels, height, width, conditions));
        UNetRun run;
        if (found < 0)
        {
            bool capture = _placement.CudaGraph && _graphs < _placement.MaxGraphs;
            if (!capture)
            {
                // A captured CUDA graph keeps reading its run's device buffers: those runs live as long as the UNet, and
                // only the others make way.
                int kept = _runs.Count(r => r.Slot == slot && !r.Run.Captured);
                if (kept >= KeptRuns)
                {
                    int oldest = _runs.FindLastIndex(r => r.Slot == slot && !r.Run.Captured);
                    _runs[oldest].Run.Dispose();
                    _runs.RemoveAt(oldest);
                }
            }
            int? graphId = capture ? ++_graphs : _placement.CudaGraph ? UNetRun.Uncaptured : null;
            run = new(this, _component, batch, channels, height, width, conditions, _placement, graphId);
        }
        else
        {
            run = _runs[found].Run;
            _runs.RemoveAt(found);
        }
        _runs.Insert(0, (slot, run));
        run.SetConditions(conditions);
        return run;
    }

    /// <summary>The element type the UNet takes for input <paramref name="name"/>.</summary>
    public TensorElementType InputType(string name) => _component.Inputs[name].ElementDataType;

    public void Dispose()
    {
        foreach (var (_, run) in _runs) run.Dispose();
        _runs.Clear();
        _component.Dispose();
    }
}

/// <summary>A per-row UNet input (encoder_hidden_states, text_embeds, time_ids, …): rows × <see cref="RowShape"/> values.</summary>
internal sealed record UNetCondition(string Name, float[] Rows, long[] RowShape)
{
    public int PerRow => checked((int)RowShape.Aggregate(1L, (a, b) => a * b));
}

/// <summary>
/// Where a UNet run's tensors live. <see cref="Host"/>: managed buffers the CPU provider reads and writes in place,
/// bound once. On a GPU (<see cref="For"/>) every tensor also has a fixed device buffer, bound once: each step
/// copies the sample (and timestep) up and the prediction down (tens of KiB for SD at 512², see bench/gpu.md), the
/// conditions go up once per request, and ONNX Runtime allocates and copies nothing per run — which is what lets it
/// replay the run as a CUDA graph.
/// </summary>
/// <param name="DeviceId">The GPU, or null for host memory.</param>
/// <param name="CudaGraph">The UNet's session captures CUDA graphs (every run must then say which graph, or none).</param>
/// <param name="MaxGraphs">How many shapes a UNet captures (<see cref="CudaOptions.MaxCudaGraphs"/>).</param>
internal sealed record UNetPlacement(int? DeviceId, bool CudaGraph, int MaxGraphs = 0)
{
    public static readonly UNetPlacement Host = new(null, false);

    /// <summary>Where <paramref name="component"/>'s runs live with <paramref name="options"/>: captured as CUDA graphs as its session captures.</summary>
    public static UNetPlacement For(DiffusionOptions options, string component) => ExecutionProviders.IsCpu(options)
        ? Host
        : new(options.DeviceId, ExecutionProviders.CapturesCudaGraph(options, component), options.Cuda.MaxCudaGraphs);
}

/// <summary>
/// The reusable input/output tensors of a denoising run, bound once to an <see cref="OrtIoBinding"/>;
/// <see cref="Run"/> is one UNet evaluation. Binding skips the per-call name lookup and marshalling of
/// <c>InferenceSession.Run</c> (~10 µs a call, bench/pipeline.md). On a GPU the bound tensors are device buffers
/// (<see cref="UNetPlacement"/>); with CUDA graphs the run has its own graph id, so every shape replays its own graph,
/// or, past the UNet's cap on graphs, <see cref="Uncaptured"/>.
/// </summary>
internal sealed class UNetRun : IDisposable
{
    /// <summary>ONNX Runtime's gpu_graph_id for a run neither captured nor replayed, in a session that captures CUDA graphs.</summary>
    internal const int Uncaptured = -1;

    private readonly OnnxComponent _component;
    private readonly int _batch;
    private readonly int _chunk;
    private readonly int _channels;
    private readonly int _height;
    private readonly int _width;
    private readonly int _perSample;
    private readonly int _perOutput;
    private readonly (string Name, long[] RowShape)[] _conditionShapes;
    private IReadOnlyList<UNetCondition> _conditions;
    private readonly List<BoundTensor> _tensors = [];
    private readonly BoundTensor _sample;
    private readonly BoundTensor _timestep;
    private readonly BoundTensor[] _conditionBuffers;
    private readonly BoundTensor _output;
    private readonly BoundTensor[] _residuals;
    private readonly int[] _residualPerRow;
    private IReadOnlyList<float[]>? _residualValues;
    private bool _residualsZero = true;
    private readonly RunOptions? _graphRunOptions;
    private readonly OrtIoBinding _binding;
    private readonly int? _deviceId;
    private DeviceLatents? _inPlace;
    private bool _inPlaceGuided;
    // An inpainting UNet's input rows without their constant channels, written by the step in place: what ControlNets read.
    private readonly BoundTensor? _latentSample;
    // A run in fixed-batch chunks stepped in place: the whole batch's input, output, conditions and residuals, whose
    // rows each step copies through the bound chunk-sized buffers (device to device on a GPU). Made by StepInPlace.
    private BoundTensor? _batchSample;
    private BoundTensor? _batchOutput;
    private BoundTensor[] _batchConditions = [];
    private BoundTensor[] _batchResiduals = [];

    internal UNetRun(UNet unet, OnnxComponent component, int batch, int channels, int height, int width, IReadOnlyList<UNetCondition> conditions,
        UNetPlacement placement, int? graphId)
    {
        _component = component;
        _batch = batch;
        _chunk = unet.StaticBatch ?? batch;
        _channels = channels;
        _height = height;
        _width = width;
        int outChannels = unet.OutChannels ?? channels;
        _perSample = channels * height * width;
        _perOutput = outChannels * height * width;
        _conditions = conditions;
        _conditionShapes = conditions.Select(c => (c.Name, c.RowShape)).ToArray();
        _deviceId = placement.DeviceId;
        var residuals = unet.Residuals?.All.ToArray() ?? [];
        _residualPerRow = residuals.Select(r => r.PerRow(height, width)).ToArray();
        _binding = component.Session.CreateIoBinding();
        try
        {
            // The sample, output and residuals cross every step: their host twins are page-locked on a GPU.
            _sample = Tensor(unet.SampleType, [_chunk, channels, height, width], pageLock: true);
            _timestep = Tensor(unet.TimestepType, unet.TimestepRank == 0 ? [] : [unet.TimestepStaticLength ?? _chunk]);
            _conditionBuffers = conditions.Select(c => Tensor(unet.InputType(c.Name), [_chunk, .. c.RowShape])).ToArray();
            _output = Tensor(unet.OutputType, [_chunk, outChannels, height, width], pageLock: true);
            _residuals = residuals.Select(r => Tensor(r.Type, [_chunk, r.Channels, r.Side(height), r.Side(width)], pageLock: true)).ToArray();
            if (_perOutput < _perSample)
            {
                _latentSample = Tensor(unet.SampleType, [batch, outChannels, height, width]);
            }
            GraphId = graphId;
            if (graphId is int id)
            {
                _graphRunOptions = new RunOptions();
                _graphRunOptions.AddRunConfigEntry("gpu_graph_id", id.ToString(System.Globalization.CultureInfo.InvariantCulture));
            }
            _binding.BindInput(unet.SampleName, _sample.Value);
            _binding.BindInput(unet.TimestepName, _timestep.Value);
            for (int c = 0; c < _conditionShapes.Length; c++)
            {
                _binding.BindInput(_conditionShapes[c].Name, _conditionBuffers[c].Value);
            }
            for (int r = 0; r < _residuals.Length; r++)
            {
                _binding.BindInput(residuals[r].Name, _residuals[r].Value);
            }
            _binding.BindOutput(unet.OutputName, _output.Value);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The run's gpu_graph_id: its CUDA graph's (from 1), <see cref="Uncaptured"/>, or null without CUDA graphs.</summary>
    internal int? GraphId { get; }

    /// <summary>Whether the run is replayed as a CUDA graph (and so must live as long as its UNet).</summary>
    internal bool Captured => GraphId > 0;

    private BoundTensor Tensor(TensorElementType type, long[] shape, bool pageLock = false)
    {
        var tensor = new BoundTensor(_deviceId, shape, pageLock, type);
        _tensors.Add(tensor);
        return tensor;
    }

    /// <summary>Elements of the output per row.</summary>
    public int OutputPerRow => _perOutput;

    /// <summary>Whether this run's tensors have the shapes a run with these arguments needs.</summary>
    internal bool Fits(int batch, int channels, int height, int width, IReadOnlyList<UNetCondition> conditions) =>
        batch == _batch && channels == _channels && height == _height && width == _width &&
        conditions.Count == _conditionShapes.Length &&
        conditions.Select((c, i) => c.Name == _conditionShapes[i].Name && c.RowShape.AsSpan().SequenceEqual(_conditionShapes[i].RowShape)).All(same => same);

    /// <summary>This request's conditions: written now when the whole batch is one chunk, else per chunk in <see cref="Run"/>.</summary>
    internal void SetConditions(IReadOnlyList<UNetCondition> conditions)
    {
        _conditions = conditions;
        var buffers = _chunk == _batch ? _conditionBuffers : _batchConditions;
        for (int c = 0; c < buffers.Length; c++)
        {
            buffers[c].Write(conditions[c].Rows);
        }
    }

    /// <summary>
    /// The ControlNet residuals of the next <see cref="Run"/>s, one array per residual input ([batch, C, h, w] each, in
    /// <see cref="ControlResiduals.All"/> order; kept by reference, so a caller may refill them between steps), or null
    /// for zeros: the UNet then computes what the plain UNet computes.
    /// </summary>
    internal void SetResiduals(IReadOnlyList<float[]>? values)
    {
        if (values is not null && values.Count != _residuals.Length)
        {
            throw new InvalidOperationException($"The unet takes {_residuals.Length} ControlNet residuals, not {values.Count}.");
        }
        _residualValues = values;
    }

    /// <summary>Writes rows [start, start + chunk) of the residuals (or zeros once) into the bound buffers.</summary>
    private void WriteResiduals(int start)
    {
        if (_residuals.Length == 0 || (_residualValues is null && _residualsZero))
        {
            return;
        }
        for (int k = 0; k < _residuals.Length; k++)
        {
            int per = _residualPerRow[k];
            if (_residualValues is null)
            {
                _residuals[k].Host.Write(new float[_residuals[k].Length]);
            }
            else
            {
                for (int r = 0; r < _chunk; r++)
                {
                    int source = Math.Min(start + r, _batch - 1);
                    _residuals[k].Host.Write(_residualValues[k].AsSpan(source * per, per), r * per);
                }
            }
            _residuals[k].Upload();
        }
        _residualsZero = _residualValues is null;
    }

    /// <summary>Evaluates the UNet on <paramref name="sample"/> [batch, C, h, w] at <paramref name="timestep"/>.</summary>
    public void Run(ReadOnlySpan<float> sample, double timestep, Span<float> output, RunOptions runOptions)
    {
        WriteTimestep(timestep);
        for (int start = 0; start < _batch; start += _chunk)
        {
            for (int r = 0; r < _chunk; r++)
            {
                int source = Math.Min(start + r, _batch - 1);
                _sample.Host.Write(sample.Slice(source * _perSample, _perSample), r * _perSample);
                if (_chunk != _batch)
                {
                    for (int c = 0; c < _conditions.Count; c++)
                    {
                        int per = _conditions[c].PerRow;
                        _conditionBuffers[c].Host.Write(_conditions[c].Rows.AsSpan(source * per, per), r * per);
                    }
                }
            }
            _sample.Upload();
            WriteResiduals(start);
            if (_chunk != _batch)
            {
                foreach (var condition in _conditionBuffers) condition.Upload();
            }
            Invoke(runOptions);
            int keep = Math.Min(_chunk, _batch - start);
            _output.Read(output.Slice(start * _perOutput, keep * _perOutput));
        }
    }

    /// <summary>
    /// Whether the input holds the output's channels (then followed by constant ones, as an inpainting UNet's mask and
    /// masked-image latents): then the UNet can take its input from, and leave its output for, a step on its own device
    /// (<see cref="StepInPlace"/>). A UNet with a fixed batch runs the batch's rows through its buffers chunk by chunk.
    /// </summary>
    internal bool CanStepInPlace => _perOutput <= _perSample;

    /// <summary>Whether the batch runs in fixed-batch chunks (a UNet exported with another batch than the rows).</summary>
    private bool Chunked => _chunk != _batch;

    /// <summary>
    /// The latents of this run's images kept beside its bound buffers, stepped by <see cref="StepGraph"/>s from <paramref name="graphs"/>
    /// (<see cref="CanStepInPlace"/> runs only); made on first use and kept with the run, as are a chunked run's
    /// whole-batch buffers, which what reads or writes the run in place (<see cref="WriteSample"/>, a ControlNet's
    /// binding) needs first.
    /// </summary>
    internal DeviceLatents StepInPlace(DeviceGraphs graphs, UNet unet, bool guided)
    {
        if (!CanStepInPlace)
        {
            throw new InvalidOperationException("This UNet run outputs more channels than it takes; it cannot step in place.");
        }
        if (_inPlace is { } kept && _inPlaceGuided == guided)
        {
            return kept;
        }
        _inPlace?.Dispose();
        _inPlace = null;
        EnsureBatchBuffers();
        _inPlace = new DeviceLatents(graphs, unet.OutputType, unet.SampleType, guided, guided ? _batch / 2 : _batch,
            _perOutput / (_height * _width), _channels, _height, _width,
            (_batchOutput ?? _output).Value, SampleValue, _latentSample?.Value, _deviceId);
        _inPlaceGuided = guided;
        return _inPlace;
    }

    /// <summary>A chunked run's whole-batch buffers, made when it is first stepped in place; this request's conditions are written to them.</summary>
    private void EnsureBatchBuffers()
    {
        if (!Chunked || _batchSample is not null)
        {
            return;
        }
        BoundTensor Batch(BoundTensor chunk) => Tensor(chunk.Host.ElementType, [_batch, .. chunk.Shape[1..]]);
        _batchSample = Batch(_sample);
        _batchOutput = Batch(_output);
        _batchConditions = _conditionBuffers.Select(Batch).ToArray();
        _batchResiduals = _residuals.Select(Batch).ToArray();
        SetConditions(_conditions);
    }

    /// <summary>
    /// Writes the whole batch's UNet input, every channel (<see cref="CanStepInPlace"/> runs): the first step of a batch
    /// stepped in place.
    /// </summary>
    internal void WriteSample(ReadOnlySpan<float> sample)
    {
        BatchSample.Write(sample[..(_batch * _perSample)]);
        _latentSample?.WriteRows(sample, _batch, _perOutput, _perSample);
    }

    /// <summary>
    /// Evaluates the UNet on the input already in its bound buffer, leaving the output in its bound buffer; with
    /// <paramref name="residualsInPlace"/> its residual inputs are as a ControlNet sum left them (<see cref="ResidualValue"/>).
    /// </summary>
    internal void RunInPlace(double timestep, RunOptions runOptions, bool residualsInPlace = false)
    {
        WriteTimestep(timestep);
        if (!residualsInPlace)
        {
            WriteResiduals(0);
        }
        if (!Chunked)
        {
            Invoke(runOptions);
            return;
        }
        // Chunk by chunk (the whole-batch buffers were made when the run was first stepped in place). The last chunk's
        // rows past the batch keep what the chunk before left there, where the host path repeats the last row: the
        // UNet's rows are independent, so neither changes the rows kept.
        for (int start = 0; start < _batch; start += _chunk)
        {
            int rows = Math.Min(_chunk, _batch - start);
            _sample.CopyRows(_batchSample!, start, 0, rows);
            for (int c = 0; c < _batchConditions.Length; c++) _conditionBuffers[c].CopyRows(_batchConditions[c], start, 0, rows);
            if (residualsInPlace)
            {
                for (int k = 0; k < _batchResiduals.Length; k++) _residuals[k].CopyRows(_batchResiduals[k], start, 0, rows);
            }
            Invoke(runOptions);
            _batchOutput!.CopyRows(_output, 0, start, rows);
        }
    }

    /// <summary>The whole batch's sample input: the bound one, or a chunked run's batch of which chunks are copied there.</summary>
    private BoundTensor BatchSample => Chunked ? _batchSample ?? throw NotInPlace() : _sample;

    /// <summary>The whole batch's sample input where it is bound (device or host memory).</summary>
    internal OrtValue SampleValue => BatchSample.Value;

    /// <summary>
    /// The channels of what a ControlNet reads in place (<see cref="ControlSampleValue"/>): the sample input's, or an
    /// inpainting UNet's latent channels alone.
    /// </summary>
    internal int ControlChannels => _latentSample is null ? _channels : _perOutput / (_height * _width);

    /// <summary>
    /// What a ControlNet reads when the step runs in place: the bound sample input, or for an inpainting UNet the latent
    /// rows the step writes beside it.
    /// </summary>
    internal OrtValue ControlSampleValue => _latentSample?.Value ?? SampleValue;

    /// <summary>
    /// Rows [<paramref name="skip"/>, …) of <see cref="ControlSampleValue"/> as a tensor of their own over the same
    /// buffer (a guess-mode ControlNet's conditional rows); the caller disposes it before this run goes.
    /// </summary>
    internal OrtValue ControlSampleRows(int skip) => (_latentSample ?? BatchSample).Rows(skip);

    /// <summary>The shape of <see cref="ControlSampleValue"/>.</summary>
    internal long[] ControlSampleShape => (_latentSample ?? BatchSample).Shape;

    /// <summary>The CUDA device of the bound buffers, or null for host memory.</summary>
    internal int? DeviceId => _deviceId;

    /// <summary>The bound residual input <paramref name="residual"/> (in <see cref="ControlResiduals.All"/> order).</summary>
    internal OrtValue ResidualValue(int residual) => BatchResiduals[residual].Value;

    /// <summary>The shape of residual input <paramref name="residual"/>.</summary>
    internal long[] ResidualShape(int residual) => BatchResiduals[residual].Shape;

    /// <summary>The whole batch's residual inputs, where a ControlNet sum in place writes: the bound ones, or a chunked run's.</summary>
    private BoundTensor[] BatchResiduals => Chunked ? (_batchSample is null ? throw NotInPlace() : _batchResiduals) : _residuals;

    private static InvalidOperationException NotInPlace() =>
        new("A chunked UNet run has whole-batch buffers only once it steps in place (StepInPlace).");

    /// <summary>Residual inputs were written where they are bound: a later run without ControlNets must zero them.</summary>
    internal void ResidualsWrittenInPlace() => _residualsZero = false;

    private void WriteTimestep(double timestep)
    {
        _timestep.Fill(timestep);
    }

    private void Invoke(RunOptions runOptions)
    {
        if (_graphRunOptions is not null)
        {
            // A graph replay cannot be interrupted: a cancelled request stops before it instead. (An uncaptured run in
            // a capturing session takes these options too: without a graph id, ONNX Runtime would capture it as graph 0.)
            if (runOptions.Terminate)
            {
                throw new OperationCanceledException("The generation was cancelled.");
            }
            _component.RunWithBinding(_graphRunOptions, _binding);
        }
        else
        {
            _component.RunWithBinding(runOptions, _binding);
        }
    }

    public void Dispose()
    {
        _inPlace?.Dispose();
        _binding.Dispose();
        _graphRunOptions?.Dispose();
        foreach (var tensor in _tensors) tensor.Dispose();
    }
}
