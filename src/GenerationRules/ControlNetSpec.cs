using System.Globalization;

namespace RenderFarm.GenerationRules;

/// <summary>
/// A ControlNet unit as users write it (<c>farm submit --control</c>, a prompt's <c>control</c> field):
/// <c>MODEL:IMAGE[:WEIGHT[:MODULE][:START-END][:guess]]</c>, e.g. <c>canny:edges.png:0.8</c>,
/// <c>canny:photo.jpg:1:canny</c> (the image preprocessed by the module first), <c>canny:edges.png:1:0-0.5</c> (steering
/// the first half of the steps) or <c>canny:edges.png:1:guess</c> (guess mode). The image is a path and may itself hold
/// colons (<c>C:\…</c>): the model ends at the first colon, the options and then a number are taken off the end, and the
/// rest is the image.
/// </summary>
/// <param name="GuidanceStart">The fraction of the steps after which the unit starts steering (A1111's Guidance Start, diffusers' control_guidance_start).</param>
/// <param name="GuidanceEnd">The fraction of the steps after which it stops (Guidance End, control_guidance_end); start = end steers no step.</param>
/// <param name="GuessMode">diffusers' guess_mode: the ControlNet sees only the prompt's (conditional) rows, its residuals scaled 0.1 → 1.0 over the blocks.</param>
public sealed record ControlNetSpec(string Model, string Image, float Weight = 1f, string Module = ControlNetSpec.NoModule,
    double GuidanceStart = 0, double GuidanceEnd = 1, bool GuessMode = false)
{
    public const string NoModule = "none";

    /// <summary>The preprocessor the client runs on the image before sending it ("none" sends it as it is).</summary>
    public const string Canny = "canny";

    /// <summary>The option word for guess mode.</summary>
    public const string Guess = "guess";

    /// <summary>Most ControlNets one image may stack.</summary>
    public const int MaxPerImage = 4;

    /// <summary>Preprocessors <c>farm submit</c> knows.</summary>
    public static IReadOnlyList<string> Modules { get; } = [NoModule, Canny];

    /// <summary>Why a guidance window is invalid (null: valid): each end within [0, 1], the start not after the end.</summary>
    public static string? ProblemWithWindow(double start, double end) =>
        !(start is >= 0 and <= 1) || !(end is >= 0 and <= 1) ? $"guidance start and end must be between 0 and 1 (got {Format(start)}-{Format(end)})"
        : start > end ? $"the guidance start {Format(start)} is after its end {Format(end)}"
        : null;

    /// <summary>
    /// Whether a unit with this window steers step <paramref name="step"/> (0-based) of a pass of <paramref name="steps"/>
    /// steps, as diffusers' controlnet_keep decides: not when step/steps &lt; start or (step + 1)/steps &gt; end.
    /// </summary>
    public static bool Steers(double start, double end, int step, int steps) =>
        !((double)step / steps < start || (double)(step + 1) / steps > end);

    /// <exception cref="ArgumentException">Not the syntax above, a weight that is not a finite number, or a window outside [0, 1].</exception>
    public static ControlNetSpec Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = text.Trim();
        int colon = text.IndexOf(':');
        if (colon <= 0 || colon == text.Length - 1)
        {
            throw new ArgumentException($"'{text}' is not MODEL:IMAGE[:WEIGHT[:MODULE][:START-END][:guess]] (e.g. canny:edges.png:0.8)");
        }
        string model = text[..colon], rest = text[(colon + 1)..];
        var options = new List<string>();
        bool guess = TakeLast(ref rest, s => s == Guess, options);
        double start = 0, end = 1;
        if (TakeLast(ref rest, s => TryParseWindow(s, out _, out _), options))
        {
            TryParseWindow(options[^1], out start, out end);
            if (ProblemWithWindow(start, end) is { } problem) throw new ArgumentException($"'{text}': {problem}");
        }
        string module = TakeLast(ref rest, s => Modules.Contains(s, StringComparer.Ordinal), options) ? options[^1] : NoModule;
        float weight = 1f;
        int last = rest.LastIndexOf(':');
        if (last > 0 && float.TryParse(rest[(last + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out var parsed))
        {
            weight = float.IsFinite(parsed) ? parsed : throw new ArgumentException($"'{text}': the weight must be a finite number");
            rest = rest[..last];
        }
        else if (options.Count > 0)
        {
            throw new ArgumentException($"'{text}': options come after a weight (MODEL:IMAGE:WEIGHT:{string.Join(':', Enumerable.Reverse(options))})");
        }
        if (rest.Trim().Length == 0)
        {
            throw new ArgumentException($"'{text}' names no image");
        }
        return new ControlNetSpec(model.Trim(), rest, weight, module, start, end, guess);
    }

    /// <summary>Takes the last :-separated field off <paramref name="rest"/> when it matches (kept in <paramref name="taken"/>).</summary>
    private static bool TakeLast(ref string rest, Func<string, bool> matches, List<string> taken)
    {
        int last = rest.LastIndexOf(':');
        if (last <= 0 || !matches(rest[(last + 1)..]))
        {
            return false;
        }
        taken.Add(rest[(last + 1)..]);
        rest = rest[..last];
        return true;
    }

    /// <summary>START-END with two plain decimals (<c>0.2-0.8</c>); a path segment such as <c>1-2.png</c> is not one.</summary>
    private static bool TryParseWindow(string text, out double start, out double end)
    {
        start = end = 0;
        int dash = text.IndexOf('-');
        const NumberStyles plain = NumberStyles.AllowDecimalPoint;
        return dash > 0
            && double.TryParse(text[..dash], plain, CultureInfo.InvariantCulture, out start)
            && double.TryParse(text[(dash + 1)..], plain, CultureInfo.InvariantCulture, out end);
    }

    /// <summary>A number as Python prints a float (1.0, 0.25), as A1111 writes weights and Guidance Start/End.</summary>
    public static string Format(double value) =>
        value == Math.Floor(value) && Math.Abs(value) < 1e15
            ? value.ToString("0.0", CultureInfo.InvariantCulture)
            : value.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>A float32 as Python prints the float it was parsed from (0.8, not 0.800000011920929).</summary>
    public static string Format(float value) =>
        value == MathF.Floor(value) && MathF.Abs(value) < 1e15f
            ? value.ToString("0.0", CultureInfo.InvariantCulture)
            : value.ToString("R", CultureInfo.InvariantCulture);
}
