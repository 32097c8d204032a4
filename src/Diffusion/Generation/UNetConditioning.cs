using RenderFarm.Diffusion.Models;
using RenderFarm.Diffusion.Prompts;

namespace RenderFarm.Diffusion.Generation;

/// <summary>
/// The UNet inputs besides sample and timestep, as data: each input name the UNet may take maps to how its per-row
/// values are made. One denoising loop serves every family; SDXL and LCM only add entries.
/// </summary>
internal static class UNetConditioning
{
    /// <summary>An LCM-distilled UNet's guidance embedding input (diffusers' <c>timestep_cond</c>, [B, time_cond_proj_dim]).</summary>
    public const string TimestepCond = "timestep_cond";

    /// <summary>What the per-row values of one request are made from.</summary>
    public sealed record Inputs(PromptEmbeddings Embeddings, int Rows, int Width, int Height, float GuidanceScale);

    private delegate UNetCondition Factory(string name, Inputs inputs, int? guidanceDim);

    private static readonly Dictionary<string, Factory> Extra = new()
    {
        // SDXL: the second encoder's pooled projection.
        ["text_embeds"] = (name, i, _) => new(name, i.Embeddings.Pooled!, [i.Embeddings.PooledSize]),
        // SDXL micro-conditioning: original size, crop top-left, target size = [H, W, 0, 0, H, W].
        ["time_ids"] = (name, i, _) =>
            new(name, Enumerable.Repeat<float[]>([i.Height, i.Width, 0, 0, i.Height, i.Width], i.Rows).SelectMany(r => r).ToArray(), [6]),
        // LCM: the guidance scale enters as an embedding of w = g − 1 (diffusers' LatentConsistencyModelPipeline), the same for every row.
        [TimestepCond] = (name, i, dim) => new(name, GuidanceRows(i.GuidanceScale, dim!.Value, i.Rows), [dim.Value]),
    };

    /// <summary>Extra inputs this pipeline can provide.</summary>
    public static IReadOnlyCollection<string> Supported => Extra.Keys;

    /// <summary>Whether the UNet needs pooled text embeddings.</summary>
    public static bool NeedsPooled(UNet unet) => unet.ExtraInputs.ContainsKey("text_embeds");

    /// <summary>
    /// Whether the UNet takes the guidance scale as an embedding (LCM-distilled): it then runs without classifier-free
    /// guidance, one row per image and no negative prompt, as diffusers' LCM pipeline does.
    /// </summary>
    public static bool EmbedsGuidance(UNet unet) => unet.ExtraInputs.ContainsKey(TimestepCond);

    /// <summary>
    /// Checks at load that every extra input is one we provide, with the shape we provide. Returns the width of the
    /// guidance embedding for an LCM UNet (the input's static dim, else unet/config.json's time_cond_proj_dim), else null.
    /// </summary>
    public static int? Check(UNet unet, OnnxComponent component, bool hasPooled, string modelDirectory)
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
        if (!unet.ExtraInputs.TryGetValue(TimestepCond, out var timestepCond))
        {
            return null;
        }
        if (timestepCond.Dimensions.Length != 2)
        {
            throw component.Invalid($"'{TimestepCond}' has rank {timestepCond.Dimensions.Length}; [batch, time_cond_proj_dim] is expected");
        }
        int? fromShape = OnnxComponent.StaticDim(timestepCond, 1);
        double fromConfig = ModelProfile.ReadNumber(modelDirectory, "unet", "time_cond_proj_dim", double.NaN);
        int? configured = double.IsNaN(fromConfig) ? null : (int)fromConfig;
        if (fromShape is int s && configured is int c && s != c)
        {
            throw component.Invalid($"'{TimestepCond}' takes {s} values per row but unet/config.json says time_cond_proj_dim {c}");
        }
        int dim = fromShape ?? configured
            ?? throw component.Invalid($"the width of '{TimestepCond}' is symbolic and unet/config.json has no time_cond_proj_dim");
        if (dim < 4)
        {
            throw component.Invalid($"'{TimestepCond}' takes {dim} values per row; a guidance embedding needs at least 4");
        }
        return dim;
    }

    /// <summary>
    /// encoder_hidden_states and every extra input the UNet takes, for the inputs' rows; guidanceDim is the guidance
    /// embedding's width (<see cref="Check"/>'s result) when the UNet takes one.
    /// </summary>
    public static IReadOnlyList<UNetCondition> Build(UNet unet, Inputs inputs, int? guidanceDim)
    {
        var e = inputs.Embeddings;
        var conditions = new List<UNetCondition> { new(unet.HiddenName, e.Hidden, [e.SequenceLength, e.HiddenSize]) };
        foreach (var name in unet.ExtraInputs.Keys)
        {
            conditions.Add(Extra[name](name, inputs, guidanceDim));
        }
        return conditions;
    }

    private static float[] GuidanceRows(float guidanceScale, int dim, int rows)
    {
        var values = new float[rows * dim];
        GuidanceScaleEmbedding.Write(guidanceScale, values.AsSpan(0, dim));
        for (int r = 1; r < rows; r++) values.AsSpan(0, dim).CopyTo(values.AsSpan(r * dim, dim));
        return values;
    }
}
