using System.Globalization;

namespace RenderFarm.GenerationRules;

/// <summary>
/// A ControlNet unit as users write it (<c>farm submit --control</c>, a prompt's <c>control</c> field):
/// <c>MODEL:IMAGE[:WEIGHT[:MODULE]]</c>, e.g. <c>canny:edges.png:0.8</c> or <c>canny:photo.jpg:1:canny</c> (the image
/// preprocessed by the module first). The image is a path and may itself hold colons (<c>C:\…</c>): the model ends at
/// the first colon, a known module and then a number are taken off the end, and the rest is the image.
/// </summary>
public sealed record ControlNetSpec(string Model, string Image, float Weight = 1f, string Module = ControlNetSpec.NoModule)
{
    public const string NoModule = "none";

    /// <summary>The preprocessor the client runs on the image before sending it ("none" sends it as it is).</summary>
    public const string Canny = "canny";

    /// <summary>Most ControlNets one image may stack.</summary>
    public const int MaxPerImage = 4;

    /// <summary>Preprocessors <c>farm submit</c> knows.</summary>
    public static IReadOnlyList<string> Modules { get; } = [NoModule, Canny];

    /// <exception cref="ArgumentException">Not MODEL:IMAGE[:WEIGHT[:MODULE]], or a weight that is not a finite number.</exception>
    public static ControlNetSpec Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = text.Trim();
        int colon = text.IndexOf(':');
        if (colon <= 0 || colon == text.Length - 1)
        {
            throw new ArgumentException($"'{text}' is not MODEL:IMAGE[:WEIGHT[:MODULE]] (e.g. canny:edges.png:0.8)");
        }
        string model = text[..colon], rest = text[(colon + 1)..];
        string module = NoModule;
        float weight = 1f;
        int last = rest.LastIndexOf(':');
        if (last > 0 && Modules.Contains(rest[(last + 1)..], StringComparer.Ordinal))
        {
            module = rest[(last + 1)..];
            rest = rest[..last];
            last = rest.LastIndexOf(':');
        }
        if (last > 0 && float.TryParse(rest[(last + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out var parsed))
        {
            weight = float.IsFinite(parsed) ? parsed : throw new ArgumentException($"'{text}': the weight must be a finite number");
            rest = rest[..last];
        }
        else if (module != NoModule)
        {
            throw new ArgumentException($"'{text}': a module comes after a weight (MODEL:IMAGE:WEIGHT:{module})");
        }
        if (rest.Trim().Length == 0)
        {
            throw new ArgumentException($"'{text}' names no image");
        }
        return new ControlNetSpec(model.Trim(), rest, weight, module);
    }
}
