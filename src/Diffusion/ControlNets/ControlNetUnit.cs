using RenderFarm.GenerationRules;

namespace RenderFarm.Diffusion.ControlNets;

/// <summary>
/// One ControlNet steering a request: the ControlNet's name in the <see cref="ControlNetLibrary"/>, its control image
/// (PNG or JPEG bytes: edges, depth, pose… already made; it is resized to the request's size and read as RGB in [0, 1],
/// as diffusers' control image processor does) and its conditioning scale. Several units add their residuals up.
/// <c>Module</c> is the preprocessor that made the image, recorded in the PNG's parameters as A1111's "Module"
/// ("none": the image was given as it is; "canny": <c>farm submit --control NAME:image.png:1.0:canny</c>).
/// </summary>
/// <param name="Model">The ControlNet's name in the <see cref="ControlNetLibrary"/>.</param>
/// <param name="Image">The control image, PNG or JPEG bytes.</param>
/// <param name="Weight">The conditioning scale its residuals are multiplied by.</param>
/// <param name="Module">The preprocessor that made the image, as A1111 names it ("none" when given as it is).</param>
/// <param name="GuidanceStart">
/// The unit steers step i of a pass of N steps only when i/N ≥ start and (i + 1)/N ≤ end (diffusers'
/// control_guidance_start/end, A1111's Guidance Start/End; N counts the steps the pass runs). start = end: no step.
/// </param>
/// <param name="GuidanceEnd">The end of the steps the unit steers, as a fraction of the pass (see <paramref name="GuidanceStart"/>).</param>
/// <param name="GuessMode">
/// diffusers' guess_mode: under classifier-free guidance the ControlNet runs on the conditional rows alone (the
/// unconditional rows get no residuals) and its residuals are scaled by torch.logspace(−1, 0, blocks + 1), 0.1 for the
/// first down block up to 1.0 for the mid block, times the weight (<see cref="GuessModeScales"/>).
/// </param>
public sealed record ControlNetUnit(string Model, byte[] Image, float Weight = 1f, string Module = "none", double GuidanceStart = 0, double GuidanceEnd = 1,
    bool GuessMode = false)
{
    /// <summary>Most units one request may stack.</summary>
    public const int MaxPerRequest = ControlNetSpec.MaxPerImage;

    /// <summary>A1111's name for the control mode closest to guess mode (the ControlNet on the conditional batch only).</summary>
    public const string GuessModeName = "ControlNet is more important";

    /// <summary>Whether this unit steers step <paramref name="step"/> (0-based) of a pass of <paramref name="steps"/> steps.</summary>
    public bool Steers(int step, int steps) => ControlNetSpec.Steers(GuidanceStart, GuidanceEnd, step, steps);

    /// <summary>
    /// Guess mode's factor for each of <paramref name="residuals"/> residuals (down blocks, then the mid block) as
    /// diffusers' ControlNetModel computes it: torch.logspace(−1, 0, residuals) in float32 (CPU: pow in double, from
    /// the start for the first half and from the end for the rest), then times the conditioning scale in float32.
    /// </summary>
    public static float[] GuessModeScales(int residuals, float scale)
    {
        double step = 1.0 / (residuals - 1);
        int halfway = residuals / 2;
        return Enumerable.Range(0, residuals)
            .Select(i => (float)(i < halfway ? Math.Pow(10, -1 + step * i) : Math.Pow(10, 0 - step * (residuals - i - 1))) * scale)
            .ToArray();
    }

    /// <summary>
    /// The units as the PNG <c>parameters</c> fields sd-webui-controlnet writes (<c>ControlNet 0: "Module: none, Model:
    /// canny, Weight: 1.0, Resize Mode: Just Resize, Guidance Start: 0.0, Guidance End: 1.0, Control Mode: Balanced"</c>;
    /// the image is stretched to the output size, diffusers' resize; guess mode is written as A1111's "ControlNet is
    /// more important").
    /// </summary>
    public static IEnumerable<KeyValuePair<string, string>> ParametersOf(IReadOnlyList<ControlNetUnit> units) =>
        units.Select((u, i) => new KeyValuePair<string, string>($"ControlNet {i}",
            $"\"Module: {u.Module}, Model: {u.Model}, Weight: {ControlNetSpec.Format(u.Weight)}, Resize Mode: Just Resize, " +
            $"Guidance Start: {ControlNetSpec.Format(u.GuidanceStart)}, Guidance End: {ControlNetSpec.Format(u.GuidanceEnd)}, " +
            $"Control Mode: {(u.GuessMode ? GuessModeName : "Balanced")}\""));
}
