using System.Globalization;

namespace RenderFarm.GenerationRules;

/// <summary>
/// The rules of an SDXL base + refiner render that every layer applies alike (CLI, coordinator, pipeline): where the
/// switch may lie, how it is written, and how PNG parameters record it (as AUTOMATIC1111 does: <c>Refiner: NAME,
/// Refiner switch at: 0.8</c>).
/// </summary>
public static class RefinerRule
{
    /// <summary>The switch when none is given: diffusers' and A1111's example value.</summary>
    public const float DefaultStart = 0.8f;

    /// <summary>The PNG parameters' key naming the refiner.</summary>
    public const string RefinerKey = "Refiner";

    /// <summary>The PNG parameters' key of the switch.</summary>
    public const string SwitchKey = "Refiner switch at";

    /// <summary>Why <paramref name="start"/> is not a switch (it must lie strictly between 0 and 1); null when it is.</summary>
    public static string? ProblemWithStart(float start) =>
        float.IsFinite(start) && start > 0f && start < 1f ? null : "must be a number strictly between 0 and 1 (the share of the steps the base renders)";

    /// <summary>Parses a switch ("0.8"); null with <paramref name="error"/> when it is not one.</summary>
    public static float? ParseStart(string text, out string? error)
    {
        var ok = float.TryParse(text.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var start);
        error = !ok ? $"must be a number in (0, 1), got '{text}'" : ProblemWithStart(start) is { } problem ? $"{problem}, got '{text}'" : null;
        return error is null ? start : null;
    }

    /// <summary>Whether a <c>refiner</c> column's text turns the refiner off for its prompt.</summary>
    public static bool IsOff(string text) => text.Trim().ToLowerInvariant() is "" or "none" or "off";

    /// <summary>The PNG parameters A1111 writes for a refined image.</summary>
    public static IEnumerable<KeyValuePair<string, string>> Parameters(string refiner, float start) =>
    [
        new(RefinerKey, refiner),
        new(SwitchKey, start.ToString(CultureInfo.InvariantCulture)),
    ];
}
