using System.Text.Json;

namespace RenderFarm.Diffusion.Schedulers;

/// <summary>
/// scheduler/scheduler_config.json as an immutable record. Keys diffusers gives different defaults per scheduler
/// class (timestep_spacing, set_alpha_to_one, clip_sample, steps_offset) stay null when absent, and each scheduler
/// applies its own default, as <c>SchedulerClass.from_config</c> would.
/// </summary>
public sealed record SchedulerConfig
{
    public static readonly IReadOnlyList<string> ValidPredictionTypes = ["epsilon", "v_prediction", "sample"];
    public static readonly IReadOnlyList<string> ValidBetaSchedules = ["linear", "scaled_linear"];
    public static readonly IReadOnlyList<string> ValidTimestepSpacings = ["leading", "linspace", "trailing"];

    public int NumTrainTimesteps { get; init; } = 1000;
    public double BetaStart { get; init; } = 0.0001;
    public double BetaEnd { get; init; } = 0.02;
    public string BetaSchedule { get; init; } = "linear";
    public IReadOnlyList<double>? TrainedBetas { get; init; }
    public string PredictionType { get; init; } = "epsilon";
    public string? TimestepSpacing { get; init; }
    public int? StepsOffset { get; init; }
    public bool? SetAlphaToOne { get; init; }
    public bool? ClipSample { get; init; }
    public double ClipSampleRange { get; init; } = 1.0;
    public bool SkipPrkSteps { get; init; } = true;
    public bool UseKarrasSigmas { get; init; }
    public int OriginalInferenceSteps { get; init; } = 50;
    public double TimestepScaling { get; init; } = 10.0;
    /// <summary>The diffusers class the config was written for (<c>_class_name</c>, e.g. LCMScheduler); null when absent.</summary>
    public string? ClassName { get; init; }

    /// <summary>The Stable Diffusion 1.x/2.x values (scaled_linear 0.00085…0.012, steps_offset 1).</summary>
    public static SchedulerConfig StableDiffusion { get; } = new()
    {
        BetaStart = 0.00085,
        BetaEnd = 0.012,
        BetaSchedule = "scaled_linear",
        StepsOffset = 1,
        SetAlphaToOne = false,
        ClipSample = false,
    };

    /// <summary>Reads and validates a scheduler_config.json file.</summary>
    public static SchedulerConfig Load(string path) => Parse(File.ReadAllText(path));

    /// <summary>Parses and validates scheduler_config.json text. Unknown keys are ignored.</summary>
    public static SchedulerConfig Parse(string json)
    {
        using var doc = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new FormatException("scheduler_config.json must be a JSON object.");
        }
        var defaults = new SchedulerConfig();
        var config = new SchedulerConfig
        {
            NumTrainTimesteps = GetInt(root, "num_train_timesteps") ?? defaults.NumTrainTimesteps,
            BetaStart = GetDouble(root, "beta_start") ?? defaults.BetaStart,
            BetaEnd = GetDouble(root, "beta_end") ?? defaults.BetaEnd,
            BetaSchedule = GetString(root, "beta_schedule") ?? defaults.BetaSchedule,
            TrainedBetas = GetDoubleArray(root, "trained_betas"),
            PredictionType = GetString(root, "prediction_type") ?? defaults.PredictionType,
            TimestepSpacing = GetString(root, "timestep_spacing"),
            StepsOffset = GetInt(root, "steps_offset"),
            SetAlphaToOne = GetBool(root, "set_alpha_to_one"),
            ClipSample = GetBool(root, "clip_sample"),
            ClipSampleRange = GetDouble(root, "clip_sample_range") ?? defaults.ClipSampleRange,
            SkipPrkSteps = GetBool(root, "skip_prk_steps") ?? defaults.SkipPrkSteps,
            UseKarrasSigmas = GetBool(root, "use_karras_sigmas") ?? defaults.UseKarrasSigmas,
            OriginalInferenceSteps = GetInt(root, "original_inference_steps") ?? defaults.OriginalInferenceSteps,
            TimestepScaling = GetDouble(root, "timestep_scaling") ?? defaults.TimestepScaling,
            ClassName = GetString(root, "_class_name"),
        };
        config.Validate();
        return config;
    }

    /// <summary>Fails loudly, listing the valid values, on anything the schedulers cannot honour.</summary>
    public void Validate()
    {
        if (!ValidPredictionTypes.Contains(PredictionType))
        {
            throw new NotSupportedException(
                $"Unknown prediction_type '{PredictionType}'; valid values are {string.Join(", ", ValidPredictionTypes)}.");
        }
        if (TrainedBetas is null && !ValidBetaSchedules.Contains(BetaSchedule))
        {
            throw new NotSupportedException(
                $"Unknown beta_schedule '{BetaSchedule}'; valid values are {string.Join(", ", ValidBetaSchedules)}.");
        }
        if (TimestepSpacing is not null && !ValidTimestepSpacings.Contains(TimestepSpacing))
        {
            throw new NotSupportedException(
                $"Unknown timestep_spacing '{TimestepSpacing}'; valid values are {string.Join(", ", ValidTimestepSpacings)}.");
        }
        if (NumTrainTimesteps < 2)
        {
            throw new NotSupportedException($"num_train_timesteps must be at least 2, not {NumTrainTimesteps}.");
        }
        if (TrainedBetas is not null && TrainedBetas.Count != NumTrainTimesteps)
        {
            throw new NotSupportedException(
                $"trained_betas has {TrainedBetas.Count} values but num_train_timesteps is {NumTrainTimesteps}.");
        }
    }

    private static JsonElement? Get(JsonElement root, string name) =>
        root.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null ? value : null;

    private static int? GetInt(JsonElement root, string name) => Get(root, name) is { } v ? (int)v.GetDouble() : null;

    private static double? GetDouble(JsonElement root, string name) => Get(root, name) is { } v ? v.GetDouble() : null;

    private static string? GetString(JsonElement root, string name) => Get(root, name) is { } v ? v.GetString() : null;

    private static bool? GetBool(JsonElement root, string name) => Get(root, name) is { } v
        ? v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new FormatException($"scheduler_config.json: '{name}' must be true or false."),
        }
        : null;

    private static IReadOnlyList<double>? GetDoubleArray(JsonElement root, string name) =>
        Get(root, name) is { ValueKind: JsonValueKind.Array } v ? v.EnumerateArray().Select(e => e.GetDouble()).ToArray() : null;
}
