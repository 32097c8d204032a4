namespace RenderFarm.Diffusion;

/// <summary>A generation failed for a classified reason (<see cref="Kind"/>); the message says what happened.</summary>
public sealed class GenerationFailedException : InvalidOperationException
{
    public GenerationFailedException(GenerationFailureKind kind, string message, Exception? innerException = null)
        : base(message, innerException) => Kind = kind;

    public GenerationFailureKind Kind { get; }
}
