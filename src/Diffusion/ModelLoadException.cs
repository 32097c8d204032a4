namespace RenderFarm.Diffusion;

/// <summary>A model directory (or one of its components) is missing, invalid, or cannot run here.</summary>
public sealed class ModelLoadException : Exception
{
    public ModelLoadException(string message) : base(message) { }
    public ModelLoadException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>The component the problem concerns (e.g. "unet"), when there is one.</summary>
    public string? Component { get; init; }
}
