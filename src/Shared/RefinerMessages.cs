using System.Runtime.InteropServices;
using RenderFarm.Protocol;

namespace RenderFarm.Shared;

/// <summary>
/// The two stages of a base + refiner shard (<see cref="GenerationParams.Refiner"/>), as the coordinator and the
/// worker both read them, and the form the latents are handed over in: float32 little-endian, [C, h, w] per image.
/// </summary>
public static class RefinerMessages
{
    /// <summary>Most latent channels a hand-off may have (SD and SDXL have 4; some newer VAEs 16).</summary>
    public const int MaxLatentChannels = 16;

    /// <summary>The base's stage: it renders up to the switch and reports each image's latents.</summary>
    public static bool IsBaseStage(Shard shard) => shard.Params.Refiner.Length > 0 && shard.Refines.Length == 0;

    /// <summary>A shard's stage as events name it: "base", "refiner", or "" for an ordinary shard.</summary>
    public static string StageOf(Shard shard) => IsRefinerStage(shard) ? "refiner" : IsBaseStage(shard) ? "base" : "";

    /// <summary>The refiner's stage: it continues the base's latents and produces the PNGs.</summary>
    public static bool IsRefinerStage(Shard shard) => shard.Refines.Length > 0;

    /// <summary>
    /// The refiner's stage of a finished base stage: the same job, shard index and images (each with its latents from
    /// <paramref name="latents"/>), queued for the refiner's workers.
    /// </summary>
    /// <param name="loraHashes">The short hash of each LoRA the base rendered with (<see cref="BaseLoraNames"/>), by name, as far as known.</param>
    public static Shard RefinerStage(Shard baseStage, IReadOnlyList<byte[]> latents, IReadOnlyDictionary<string, string>? loraHashes = null)
    {
        var stage = baseStage.Clone();
        stage.Refines = baseStage.Params.Model;
        stage.Params.Model = baseStage.Params.Refiner;
        // The refiner continues latents: the base's inputs are the base's alone. Its LoRAs (a base's LoRA does not fit
        // the refiner's UNet) and img2img's init images (already in the latents) stay behind; the ControlNets (made for
        // the base's UNet, not run again), the strength and the prompts with their tags travel for the images'
        // parameters. Inpainting keeps each image's init image and mask: the refiner keeps the unmasked area as the
        // base did (diffusers' inpainting pipelines with denoising_start).
        stage.LoraKey = "";
        stage.BaseLoras.Add(stage.Params.Loras);
        foreach (var (name, hash) in loraHashes ?? new Dictionary<string, string>()) stage.BaseLoraHashes[name] = hash;
        stage.Params.Loras.Clear();
        var inpainting = stage.Params.InputMode == InputMode.Inpaint;
        for (var i = 0; i < stage.Images.Count; i++)
        {
            var image = stage.Images[i];
            image.InitLatents = Google.Protobuf.ByteString.CopyFrom(latents[i]);
            if (inpainting) continue;
            image.InitImage = "";
            image.MaskImage = "";
        }
        return stage;
    }

    /// <summary>
    /// The LoRAs a base stage's images rendered with, by name: its params.loras and its prompts' <c>&lt;lora:…&gt;</c>
    /// tags (the names whose short hashes a refiner stage carries, <see cref="Shard.BaseLoraHashes"/>).
    /// </summary>
    public static IEnumerable<string> BaseLoraNames(Shard baseStage)
    {
        var job = LoraMessages.ToSet(baseStage.Params.Loras);
        return baseStage.Images.SelectMany(i => RenderFarm.GenerationRules.LoraPrompt.ForImage(job, i.Prompt, i.NegativePrompt).Items)
            .Select(l => l.Name).Concat(job.Items.Select(l => l.Name)).Distinct(StringComparer.Ordinal);
    }

    /// <summary>
    /// Why <paramref name="bytes"/> are not one image's latents for <paramref name="p"/>'s size (with hires fix, the second
    /// pass's: the switch falls within it); null when they are.
    /// </summary>
    public static string? LatentsProblem(ReadOnlySpan<byte> bytes, GenerationParams p)
    {
        var (width, height) = UpscaleMessages.RenderSize(p);
        var plane = (long)(width / 8) * (height / 8) * sizeof(float);
        if (plane == 0 || bytes.Length == 0 || bytes.Length % plane != 0 || bytes.Length / plane > MaxLatentChannels)
            return $"{bytes.Length} bytes of latents (a {width}x{height} image's are {plane} bytes per channel, at most {MaxLatentChannels} channels)";
        foreach (var value in MemoryMarshal.Cast<byte, float>(bytes))
            if (!float.IsFinite(value)) return "latents that are not all finite";
        return null;
    }

    /// <summary>One image's latents as they travel.</summary>
    public static byte[] ToBytes(ReadOnlySpan<float> latents)
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("latent hand-off assumes a little-endian machine");
        return MemoryMarshal.AsBytes(latents).ToArray();
    }

    /// <summary>The images' latents [images, C, h, w], concatenated in order.</summary>
    public static float[] ToLatents(IEnumerable<ImageTask> images)
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("latent hand-off assumes a little-endian machine");
        var parts = images.Select(i => i.InitLatents).ToList();
        var latents = new float[parts.Sum(p => p.Length) / sizeof(float)];
        var target = MemoryMarshal.AsBytes(latents.AsSpan());
        foreach (var part in parts)
        {
            part.Span.CopyTo(target);
            target = target[part.Length..];
        }
        return latents;
    }
}
