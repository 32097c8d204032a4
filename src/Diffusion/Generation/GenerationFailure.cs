using Microsoft.ML.OnnxRuntime;

namespace RenderFarm.Diffusion;

/// <summary>
/// Classifies a failed generation. ONNX Runtime reports failures as text ("[ErrorCode:Fail] … std::bad_alloc"), so
/// its errors are classified by their code and by the allocator's, the providers' and the shape checks' own words.
/// </summary>
public static class GenerationFailure
{
    // Allocation failures: the CPU allocator (std::bad_alloc, ORT's arena), CUDA/cuDNN/cuBLAS, DirectML (E_OUTOFMEMORY).
    private static readonly string[] OutOfMemoryWords =
    [
        "bad_alloc", "failed to allocate", "out of memory", "outofmemory", "out_of_memory", "alloc_failed",
        "cudaerrormemoryallocation", "e_outofmemory", "0x8007000e",
    ];

    private static readonly string[] DeviceWords = ["cuda", "cudnn", "cublas", "curand", "tensorrt", "directml", "dmlexecutionprovider"];

    // Kernel shape checks that a size the network cannot take (its down/up-sampling does not line up) trips.
    private static readonly string[] ShapeWords =
    [
        "dimensions must match", "mismatched dimensions", "shape mismatch", "incompatible dimensions", "not broadcastable",
        "cannot broadcast", "invalid input shape", "got invalid dimensions",
    ];

    /// <summary>The kind of failure <paramref name="exception"/> is.</summary>
    public static GenerationFailureKind Classify(Exception exception) => exception switch
    {
        GenerationFailedException classified => classified.Kind,
        OnnxRuntimeException ort => Classify(ort.Message),
        OutOfMemoryException => GenerationFailureKind.OutOfMemory,
        // The pipeline's request checks, undecodable init images and masks among them.
        ArgumentException => GenerationFailureKind.Input,
        ModelLoadException => GenerationFailureKind.Bug,
        AggregateException { InnerExceptions.Count: > 0 } aggregate => Classify(aggregate.InnerExceptions[0]),
        _ when exception.InnerException is { } inner => Classify(inner),
        _ => GenerationFailureKind.Bug,
    };

    /// <summary>The typed failure for an error ONNX Runtime raised while generating.</summary>
    public static GenerationFailedException FromOnnxRuntime(OnnxRuntimeException exception) =>
        new(Classify(exception.Message), $"ONNX Runtime failed while generating: {Models.ExecutionProviders.FirstLine(exception.Message)}", exception);

    /// <summary>The kind of an ONNX Runtime error, from its message.</summary>
    internal static GenerationFailureKind Classify(string message)
    {
        var text = message.ToLowerInvariant();
        if (OutOfMemoryWords.Any(text.Contains)) return GenerationFailureKind.OutOfMemory;
        if (text.Contains("[errorcode:epfail]") || DeviceWords.Any(text.Contains)) return GenerationFailureKind.Device;
        if (text.Contains("[errorcode:invalidargument]") || ShapeWords.Any(text.Contains)) return GenerationFailureKind.Input;
        return GenerationFailureKind.Bug;
    }
}
