using System.Text.Json;
using RenderFarm.GenerationRules;

namespace RenderFarm.Diffusion;

/// <summary>
/// Reads what <see cref="SamplingDefaultsRule"/> needs from a model directory, without loading a model:
/// scheduler/scheduler_config.json's <c>_class_name</c>, <c>timestep_spacing</c> and <c>prediction_type</c>, and
/// unet/config.json's <c>time_cond_proj_dim</c> (set, not null, for an LCM-distilled UNet; optimum's exports copy the
/// diffusers config beside the model).
/// </summary>
public static class ModelSampling
{
    /// <summary>The distilled model's settings, or null for an ordinary model or a directory without a scheduler config.</summary>
    /// <exception cref="ModelLoadException">A config file that is not a JSON object.</exception>
    public static SamplingDefaultsRule.Defaults? ReadDefaults(string modelDirectory)
    {
        var scheduler = ReadObject(Path.Combine(modelDirectory, "scheduler", "scheduler_config.json"), "scheduler");
        if (scheduler is null)
        {
            return null;
        }
        var unet = ReadObject(Path.Combine(modelDirectory, "unet", "config.json"), "unet");
        bool embedsGuidance = unet is not null && unet.Value.TryGetProperty("time_cond_proj_dim", out var dim) && dim.ValueKind == JsonValueKind.Number;
        return SamplingDefaultsRule.For(Text(scheduler.Value, "_class_name"), Text(scheduler.Value, "timestep_spacing"),
            Text(scheduler.Value, "prediction_type"), embedsGuidance);
    }

    private static string? Text(JsonElement root, string name) =>
        root.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    private static JsonElement? ReadObject(string path, string component)
    {
        if (!File.Exists(path))
        {
            return null;
        }
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path), new JsonDocumentOptions { AllowTrailingCommas = true });
            return doc.RootElement.ValueKind == JsonValueKind.Object
                ? doc.RootElement.Clone()
                : throw new ModelLoadException($"{path} is not a JSON object.") { Component = component };
        }
        catch (JsonException ex)
        {
            throw new ModelLoadException($"{path} is not valid JSON: {ex.Message}", ex) { Component = component };
        }
    }
}
