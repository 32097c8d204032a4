using System.Text.Json;
using RenderFarm.Diffusion.Models;

namespace RenderFarm.Diffusion;

/// <summary>
/// What decides whether one model can continue another's latents (a base + refiner render), read from a model
/// directory without loading it: the VAE's latent channels (vae_decoder/config.json or vae/config.json
/// <c>latent_channels</c>, else unet/config.json <c>out_channels</c>, else 4) and whether it is an SDXL refiner
/// (model_index.json <c>requires_aesthetics_score</c>, as diffusers' refiner declares it).
/// </summary>
public sealed record ModelShape(int LatentChannels, bool Refiner)
{
    /// <exception cref="ModelLoadException">A config file that is not valid JSON.</exception>
    public static ModelShape Read(string modelDirectory)
    {
        var channels = ModelProfile.ReadNumber(modelDirectory, "vae_decoder", "latent_channels", double.NaN);
        if (double.IsNaN(channels)) channels = ModelProfile.ReadNumber(modelDirectory, "vae", "latent_channels", double.NaN);
        if (double.IsNaN(channels)) channels = ModelProfile.ReadNumber(modelDirectory, "unet", "out_channels", 4);
        return new ModelShape((int)channels, RequiresAestheticScore(modelDirectory));
    }

    private static bool RequiresAestheticScore(string modelDirectory)
    {
        var path = Path.Combine(modelDirectory, "model_index.json");
        if (!File.Exists(path)) return false;
        try
        {
            using var index = JsonDocument.Parse(File.ReadAllText(path));
            return index.RootElement.ValueKind == JsonValueKind.Object
                && index.RootElement.TryGetProperty("requires_aesthetics_score", out var value) && value.ValueKind == JsonValueKind.True;
        }
        catch (JsonException ex)
        {
            throw new ModelLoadException($"{path} is not valid JSON: {ex.Message}", ex);
        }
    }
}
