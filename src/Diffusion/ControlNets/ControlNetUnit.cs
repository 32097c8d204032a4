namespace RenderFarm.Diffusion.ControlNets;

/// <summary>
/// One ControlNet steering a request: the ControlNet's name in the <see cref="ControlNetLibrary"/>, its control image
/// (PNG or JPEG bytes: edges, depth, pose… already made; it is resized to the request's size and read as RGB in [0, 1],
/// as diffusers' control image processor does) and its conditioning scale. Several units add their residuals up.
/// <c>Module</c> is the preprocessor that made the image, recorded in the PNG's parameters as A1111's "Module"
/// ("none": the image was given as it is; "canny": <c>farm submit --control NAME:image.png:1.0:canny</c>).
/// </summary>
public sealed record ControlNetUnit(string Model, byte[] Image, float Weight = 1f, string Module = "none")
{
    /// <summary>Most units one request may stack.</summary>
    public const int MaxPerRequest = GenerationRules.ControlNetSpec.MaxPerImage;

    /// <summary>
    /// The units as the PNG <c>parameters</c> fields sd-webui-controlnet writes (<c>ControlNet 0: "Module: none, Model:
    /// canny, Weight: 1.0, Resize Mode: Just Resize, …"</c>; the image is stretched to the output size, diffusers' resize,
    /// and each unit steers every step, Guidance Start 0.0 to End 1.0).
    /// </summary>
    public static IEnumerable<KeyValuePair<string, string>> ParametersOf(IReadOnlyList<ControlNetUnit> units) =>
        units.Select((u, i) => new KeyValuePair<string, string>($"ControlNet {i}",
            $"\"Module: {u.Module}, Model: {u.Model}, Weight: {PythonFloat(u.Weight)}, Resize Mode: Just Resize, " +
            "Guidance Start: 0.0, Guidance End: 1.0, Control Mode: Balanced\""));

    /// <summary>A float as Python prints it (1.0, 0.75), as A1111 writes weights.</summary>
    private static string PythonFloat(float value) =>
        value == MathF.Floor(value) && MathF.Abs(value) < 1e15f
            ? value.ToString("0.0", System.Globalization.CultureInfo.InvariantCulture)
            : value.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
}
