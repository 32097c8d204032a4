namespace RenderFarm.Diffusion;

/// <summary>How the pipeline runs its ONNX sessions.</summary>
public sealed record DiffusionOptions
{
    /// <summary>cpu | cuda | tensorrt | directml. The CPU build of ONNX Runtime only offers cpu.</summary>
    public string ExecutionProvider { get; init; } = "cpu";

    /// <summary>Threads for one operator; 0 leaves ONNX Runtime's default.</summary>
    public int IntraOpThreads { get; init; }

    /// <summary>GPU ordinal for cuda/tensorrt/directml.</summary>
    public int DeviceId { get; init; }
}

/// <summary>One image of a request: its prompt, negative prompt and seed.</summary>
public sealed record ImagePrompt(string Prompt, string NegativePrompt, long Seed);

/// <summary>
/// A batch of images sharing size, steps, guidance and scheduler; rendered as one UNet batch.
/// </summary>
public sealed record GenerationRequest(
    IReadOnlyList<ImagePrompt> Images,
    int Width,
    int Height,
    int Steps,
    float GuidanceScale,
    string Scheduler = "euler",
    string ModelName = "");

/// <summary>A finished image: PNG bytes with the A1111 "parameters" text chunk.</summary>
public sealed record GeneratedImage(ImagePrompt Prompt, byte[] Png);

/// <summary>Progress of the denoising loop; <see cref="Step"/> is 1-based.</summary>
public readonly record struct StepProgress(int Step, int TotalSteps, TimeSpan Elapsed);

/// <summary>A model directory (or one of its components) is missing, invalid, or cannot run here.</summary>
public sealed class ModelLoadException : Exception
{
    public ModelLoadException(string message) : base(message) { }
    public ModelLoadException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>The component the problem concerns (e.g. "unet"), when there is one.</summary>
    public string? Component { get; init; }
}
