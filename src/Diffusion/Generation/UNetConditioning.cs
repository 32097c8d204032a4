using RenderFarm.Diffusion.Models;
using RenderFarm.Diffusion.Prompts;

namespace RenderFarm.Diffusion.Generation;

/// <summary>
/// The UNet inputs besides sample and timestep, as data: each input name the UNet may take maps to how its per-row
/// values are made. One denoising loop serves every family; SDXL only adds entries.
/// </summary>
internal static class UNetConditioning
{
    private delegate UNetCondition Factory(string name, PromptEmbeddings embeddings, int rows, int width, int height);

    private static readonly Dictionary<string, Factory> Extra = new()
    {
        // SDXL: the second encoder's pooled projection.
        ["text_embeds"] = (name, e, rows, _, _) => new(name, e.Pooled!, [e.PooledSize]),
        // SDXL micro-conditioning: original size, crop top-left, target size = [H, W, 0, 0, H, W].
        ["time_ids"] = (name, _, rows, width, height) =>
            new(name, Enumerable.Repeat<float[]>([height, width, 0, 0, height, width], rows).SelectMany(r => r).ToArray(), [6]),
    };

    /// <summary>Extra inputs this pipeline can provide.</summary>
    public static IReadOnlyCollection<string> Supported => Extra.Keys;

    /// <summary>Whether the UNet needs pooled text embeddings.</summary>
    public static bool NeedsPooled(UNet unet) => unet.ExtraInputs.ContainsKey("text_embeds");

    /// <summary>Checks at load that every extra input is one we provide, with the shape we provide.</summary>
    public static void Check(UNet unet, OnnxComponent component, bool hasPooled)
    {
        var unknown = unet.ExtraInputs.Keys.Where(k => !Extra.ContainsKey(k)).ToArray();
        if (unknown.Length > 0)
        {
            throw new ModelLoadException(
                $"The unet takes inputs this pipeline does not provide ({string.Join(", ", unknown)}); supported extra inputs are {string.Join(", ", Extra.Keys)}.")
            {
                Component = "unet",
            };
        }
        if (NeedsPooled(unet) && !hasPooled)
        {
            throw new ModelLoadException("The unet takes text_embeds (SDXL) but the model directory has no text_encoder_2 with a text_embeds output.") { Component = "unet" };
        }
        if (unet.ExtraInputs.TryGetValue("time_ids", out var timeIds) && OnnxComponent.StaticDim(timeIds, 1) is int n && n != 6)
        {
            throw component.Invalid($"'time_ids' has {n} values per row; only SDXL base's 6 ([H, W, 0, 0, H, W]) are supported");
        }
    }

    /// <summary>encoder_hidden_states and every extra input the UNet takes, for <paramref name="rows"/> rows.</summary>
    public static IReadOnlyList<UNetCondition> Build(UNet unet, PromptEmbeddings embeddings, int rows, int width, int height)
    {
        var conditions = new List<UNetCondition> { new(unet.HiddenName, embeddings.Hidden, [embeddings.SequenceLength, embeddings.HiddenSize]) };
        foreach (var name in unet.ExtraInputs.Keys)
        {
            conditions.Add(Extra[name](name, embeddings, rows, width, height));
        }
        return conditions;
    }
}
