namespace RenderFarm.Imaging;

/// <summary>Why bytes did not decode as an image (<see cref="ImageCheck"/>).</summary>
public enum ImageProblem
{
    /// <summary>They decoded.</summary>
    None,

    /// <summary>Not a PNG or JPEG at all: no format Skia recognises, another format, or too few bytes to tell.</summary>
    NotAnImage,

    /// <summary>The header claims more pixels than allowed; nothing was decoded.</summary>
    TooLarge,

    /// <summary>A PNG or JPEG that is cut off or corrupt.</summary>
    Undecodable,
}
