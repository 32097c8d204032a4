using System.Globalization;
using RenderFarm.Client.Cli;
using RenderFarm.Client.Connection;
using RenderFarm.Client.Submit;

namespace RenderFarm.Client.Config;

/// <summary>Every key of <c>config.json</c>, in the order <c>farm config show</c> lists them.</summary>
public static class ConfigKeys
{
    public static readonly ConfigKey Coordinator = new(
        "coordinator", "--coordinator", ["FARM_COORDINATOR", "Farm__Coordinator"], CoordinatorConnection.DefaultAddress,
        "Coordinator URL.", NormalizeAddress);

    public static readonly ConfigKey ApiKey = new(
        "api_key", "--api-key", ["FARM_API_KEY"], null,
        "API key sent as the x-api-key header.", NormalizeApiKey, IsSecret: true);

    public static readonly ConfigKey Model = new(
        "model", "--model", ["FARM_MODEL"], null,
        "Model for submitted jobs (unset: the coordinator's default model).", NormalizeName);

    public static readonly ConfigKey Steps = new(
        "steps", "--steps", ["FARM_STEPS"], "20", "Denoising steps.", NormalizeSteps, IsNumber: true);

    public static readonly ConfigKey Size = new(
        "size", "--size", ["FARM_SIZE"], "512x512", "Image size WIDTHxHEIGHT, multiples of 8.", NormalizeSize);

    public static readonly ConfigKey Guidance = new(
        "guidance", "--guidance", ["FARM_GUIDANCE"], "7.5", "Classifier-free guidance scale (≤ 1 disables it).",
        NormalizeGuidance, IsNumber: true);

    public static readonly ConfigKey Scheduler = new(
        "scheduler", "--scheduler", ["FARM_SCHEDULER"], RenderFarm.GenerationRules.SchedulerNames.Default,
        $"Scheduler ({string.Join(", ", RenderFarm.GenerationRules.SchedulerNames.All)}).", NormalizeScheduler);

    public static IReadOnlyList<ConfigKey> All { get; } = [Coordinator, ApiKey, Model, Steps, Size, Guidance, Scheduler];

    public static string Names => string.Join(", ", All.Select(k => k.Name));

    /// <summary>The key called <paramref name="name"/> (dashes and case forgiven), or a usage error listing the keys.</summary>
    public static ConfigKey Find(string name)
    {
        var wanted = name.Trim().Replace('-', '_');
        return All.FirstOrDefault(k => string.Equals(k.Name, wanted, StringComparison.OrdinalIgnoreCase))
               ?? throw new CliUsageException($"unknown config key '{name}' (known: {Names})");
    }

    /// <summary>The tail of a flag's help text: where else the value can come from, and its default.</summary>
    public static string HelpSuffix(ConfigKey key) =>
        $"env {key.EnvironmentVariables[0]}; config key {key.Name}" + (key.Default is null ? "" : $"; default {key.Default}");

    /// <summary>"abcd1234wxyz" → "********wxyz": enough to tell keys apart, too little to use one.</summary>
    public static string Mask(string secret) =>
        secret.Length >= 12 ? new string('*', 8) + secret[^4..] : new string('*', 8);

    private static string NormalizeAddress(string text)
    {
        try
        {
            CoordinatorConnection.ParseAddress(text);
        }
        catch (CliUsageException)
        {
            throw new FormatException($"'{text}' is not a coordinator address (expected e.g. {CoordinatorConnection.DefaultAddress})");
        }

        return text.Trim();
    }

    private static string NormalizeApiKey(string text)
    {
        var key = text.Trim();
        if (!CoordinatorConnection.IsValidApiKey(key))
        {
            throw new FormatException("may only hold printable ASCII characters");
        }

        return key;
    }

    private static string NormalizeName(string text)
    {
        var name = text.Trim();
        return name.Length == 0 ? throw new FormatException("is empty") : name;
    }

    /// <summary>A scheduler the farm serves: a typo is caught when it is set, not at every submit.</summary>
    private static string NormalizeScheduler(string text)
    {
        var name = NormalizeName(text);
        return RenderFarm.GenerationRules.SchedulerNames.IsKnown(name) ? name
            : throw new FormatException($"'{name}' is not a scheduler; valid: {string.Join(", ", RenderFarm.GenerationRules.SchedulerNames.All)}");
    }

    private static string NormalizeSteps(string text)
    {
        if (!int.TryParse(text.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var steps))
        {
            throw new FormatException($"must be a whole number, got '{text}'");
        }

        return steps is < 1 or > 10_000
            ? throw new FormatException($"must be between 1 and 10000, got {steps}")
            : steps.ToString(CultureInfo.InvariantCulture);
    }

    private static string NormalizeSize(string text) =>
        ImageSize.TryParse(text, out var error)?.ToString() ?? throw new FormatException(error);

    private static string NormalizeGuidance(string text)
    {
        if (!float.TryParse(text.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var guidance) ||
            !float.IsFinite(guidance) || guidance < 0)
        {
            throw new FormatException($"must be a finite number ≥ 0, got '{text}'");
        }

        return guidance.ToString(CultureInfo.InvariantCulture);
    }
}
