namespace RenderFarm.Imaging;

/// <summary>What <see cref="ImageDecoder.Check"/> found: the problem (if any), the header (when it was read) and why.</summary>
public sealed record ImageCheck(ImageProblem Problem, ImageHeader? Header, string Error)
{
    /// <summary>Whether the image decoded completely.</summary>
    public bool Decodes => Problem == ImageProblem.None;
}
