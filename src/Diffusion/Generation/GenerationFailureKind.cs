namespace RenderFarm.Diffusion;

/// <summary>What made a generation fail: whose fault it is decides what a render farm does about it.</summary>
public enum GenerationFailureKind
{
    /// <summary>The request itself: an image that cannot be decoded, a size or shape the model cannot run.</summary>
    Input,

    /// <summary>The device (or host) ran out of memory for this request: a smaller batch or size may fit.</summary>
    OutOfMemory,

    /// <summary>The GPU or its execution provider failed (CUDA, cuDNN, cuBLAS, TensorRT, DirectML errors).</summary>
    Device,

    /// <summary>Anything else: a fault of the software or of the model installation.</summary>
    Bug,
}
