using System.Text.Json;

namespace RenderFarm.Diffusion.Models;

/// <summary>
/// What differs between model families, as data: the VAE's latent scaling (SD 0.18215, SDXL 0.13025) and spatial
/// scale factor, and the family name from model_index.json. Read from vae_decoder/config.json (or vae/config.json)
/// and model_index.json when present; Stable Diffusion 1.x defaults otherwise.
/// </summary>
internal sealed record ModelProfile
{
    public string PipelineClass { get; init; } = "OnnxStableDiffusionPipeline";

    /// <summary>Latents are divided by this before decoding (multiplied after encoding).</summary>
    public float VaeScalingFactor { get; init; } = 0.18215f;

    /// <summary>Added after dividing by the scaling factor (0 for SD 1.x/2.x/XL).</summary>
    public float VaeShiftFactor { get; init; }

    /// <summary>Image pixels per latent pixel along each axis: 2^(number of VAE blocks − 1), 8 for SD.</summary>
    public int VaeScaleFactor { get; init; } = 8;

    public static ModelProfile Read(string modelDirectory)
    {
        var profile = new ModelProfile();
        var indexPath = Path.Combine(modelDirectory, "model_index.json");
        if (File.Exists(indexPath))
        {
            using var index = ParseObject(indexPath, "model_index");
            if (index.RootElement.TryGetProperty("_class_name", out var className) && className.ValueKind == JsonValueKind.String)
            {
                profile = profile with { PipelineClass = className.GetString()! };
            }
        }
        foreach (var component in new[] { "vae_decoder", "vae" })
        {
            var configPath = Path.Combine(modelDirectory, component, "config.json");
            if (!File.Exists(configPath))
            {
                continue;
            }
            using var config = ParseObject(configPath, component);
            var root = config.RootElement;
            if (root.TryGetProperty("scaling_factor", out var scaling) && scaling.ValueKind == JsonValueKind.Number)
            {
                profile = profile with { VaeScalingFactor = (float)scaling.GetDouble() };
            }
            if (root.TryGetProperty("shift_factor", out var shift) && shift.ValueKind == JsonValueKind.Number)
            {
                profile = profile with { VaeShiftFactor = (float)shift.GetDouble() };
            }
            if (root.TryGetProperty("block_out_channels", out var blocks) && blocks.ValueKind == JsonValueKind.Array && blocks.GetArrayLength() > 0)
            {
                profile = profile with { VaeScaleFactor = 1 << (blocks.GetArrayLength() - 1) };
            }
            if (profile.VaeScalingFactor <= 0 || !float.IsFinite(profile.VaeScalingFactor))
            {
                throw new ModelLoadException($"{configPath}: scaling_factor must be a positive number.") { Component = component };
            }
            break;
        }
        return profile;
    }

    /// <summary>A number from <c>&lt;component&gt;/config.json</c>, or <paramref name="fallback"/> when absent.</summary>
    public static double ReadNumber(string modelDirectory, string component, string key, double fallback) =>
        Read<double>(modelDirectory, component, key, value => value.ValueKind == JsonValueKind.Number ? value.GetDouble() : null) ?? fallback;

    /// <summary>A true/false from <c>&lt;component&gt;/config.json</c>, or <paramref name="fallback"/> when absent.</summary>
    public static bool ReadFlag(string modelDirectory, string component, string key, bool fallback) =>
        Read<bool>(modelDirectory, component, key, value => value.ValueKind is JsonValueKind.True or JsonValueKind.False ? value.GetBoolean() : null) ?? fallback;

    /// <summary><paramref name="key"/> of <c>&lt;component&gt;/config.json</c> as <paramref name="parse"/> reads it; null when absent or of another kind.</summary>
    private static T? Read<T>(string modelDirectory, string component, string key, Func<JsonElement, T?> parse) where T : struct
    {
        var path = Path.Combine(modelDirectory, component, "config.json");
        if (!File.Exists(path))
        {
            return null;
        }
        using var config = ParseObject(path, component);
        return config.RootElement.TryGetProperty(key, out var value) ? parse(value) : null;
    }

    private static JsonDocument ParseObject(string path, string component)
    {
        try
        {
            var doc = JsonDocument.Parse(File.ReadAllText(path));
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                doc.Dispose();
                throw new ModelLoadException($"{path} is not a JSON object.") { Component = component };
            }
            return doc;
        }
        catch (JsonException ex)
        {
            throw new ModelLoadException($"{path} is not valid JSON: {ex.Message}", ex) { Component = component };
        }
    }
}
