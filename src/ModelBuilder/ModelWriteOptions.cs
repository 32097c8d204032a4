using RenderFarm.ModelBuilder.Graph;

namespace RenderFarm.ModelBuilder;

public sealed class ModelWriteOptions
{
    /// <summary>Seed of every random weight; the same preset and seed give byte-identical files.</summary>
    public ulong Seed { get; init; }

    /// <summary>Replace an existing non-empty output directory.</summary>
    public bool Force { get; init; }

    /// <summary>Components whose weights exceed this many bytes store them in model.onnx_data.</summary>
    public long ExternalDataThreshold { get; init; } = OnnxModelWriter.ExternalDataThreshold;

    /// <summary>
    /// Name the graphs as torch.onnx.export does (module-path node names, Linear weights onnx::MatMul_N) instead of by
    /// parameter name; the weights are the same either way (<see cref="Graph.GraphOptions.TorchExportNames"/>).
    /// </summary>
    public bool TorchExportNames { get; init; }

    /// <summary>
    /// Replacement values for some weights: given a component folder and an initializer, its new values as float32
    /// (converted to the weight's type), or null to keep the generated ones. Tests write with it the merged model a
    /// LoRA must equal.
    /// </summary>
    public Func<string, Initializer, float[]?>? ReplaceWeights { get; init; }

    /// <summary>Receives one line per written component.</summary>
    public Action<string>? Log { get; init; }

    public CancellationToken CancellationToken { get; init; }
}
