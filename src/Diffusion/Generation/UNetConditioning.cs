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
    /// <param name="Embeddings">The request's prompt embeddings (hidden states, and pooled ones for SDXL).</param>
    /// <param name="Rows">UNet batch rows: images, twice that under classifier-free guidance.</param>
    /// <param name="Width">The image width in pixels.</param>
    /// <param name="Height">The image height in pixels.</param>
    /// <param name="GuidanceScale">The classifier-free guidance scale.</param>
    /// <param name="Guided">Whether the rows are [negatives; positives] (classifier-free guidance).</param>
    public sealed record Inputs(PromptEmbeddings Embeddings, int Rows, int Width, int Height, float GuidanceScale, bool Guided);

    /// <summary>The SDXL refiner's aesthetic-score conditioning (diffusers' defaults: aesthetic_score, negative_aesthetic_score).</summary>
    public const float AestheticScore = 6f, NegativeAestheticScore = 2.5f;

    private delegate UNetCondition Factory(string name, UNet unet, Inputs inputs, int? guidanceDim);

    private static readonly Dictionary<string, Factory> Extra = new()
    {
        // SDXL: the second encoder's pooled projection.
        ["text_embeds"] = (name, _, i, _) => new(name, i.Embeddings.Pooled!, [i.Embeddings.PooledSize]),
        // SDXL micro-conditioning: original size, crop top-left, target size = [H, W, 0, 0, H, W]; the refiner (5 values)
        // has the aesthetic score instead of the target size, 2.5 on the negative rows and 6 on the others.
        ["time_ids"] = (name, unet, i, _) => TimeIds(name, OnnxComponent.StaticDim(unet.ExtraInputs[name], 1) ?? 6, i),
        // LCM: the guidance scale enters as an embedding of w = g − 1 (diffusers' LatentConsistencyModelPipeline), the same for every row.
        [TimestepCond] = (name, _, i, dim) => new(name, GuidanceRows(i.GuidanceScale, dim!.Value, i.Rows), [dim.Value]),
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
        if (unet.ExtraInputs.TryGetValue("time_ids", out var timeIds))
        {
            // Symbolic: an SDXL base export (6); the refiner's exports fix 5, as ours do.
            int n = OnnxComponent.StaticDim(timeIds, 1) ?? 6;
            if (n is not (5 or 6))
            {
                throw component.Invalid($"'time_ids' has {n} values per row; SDXL base's 6 ([H, W, 0, 0, H, W]) and the refiner's 5 ([H, W, 0, 0, aesthetic score]) are supported");
            }
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
            conditions.Add(Extra[name](name, unet, inputs, guidanceDim));
        }
        return conditions;
    }

    private static UNetCondition TimeIds(string name, int count, Inputs i) =>
        new(name, TimeIdRows(count, i.Rows, i.Width, i.Height, i.Guided), [count]);

    /// <summary>
    /// time_ids for <paramref name="rows"/> rows: SDXL base's 6 values [H, W, 0, 0, H, W], or the refiner's 5
    /// [H, W, 0, 0, aesthetic score] with the negative score on the first half of a guided batch (its negatives).
    /// </summary>
    internal static float[] TimeIdRows(int count, int rows, int width, int height, bool guided)
    {
        var values = new float[rows * count];
        for (int r = 0; r < rows; r++)
        {
            float[] row = count == 6
                ? [height, width, 0, 0, height, width]
                : [height, width, 0, 0, guided && r < rows / 2 ? NegativeAestheticScore : AestheticScore];
            row.CopyTo(values, r * count);
        }
        return values;
    }

    private static float[] GuidanceRows(float guidanceScale, int dim, int rows)
    {
        var values = new float[rows * dim];
        GuidanceScaleEmbedding.Write(guidanceScale, values.AsSpan(0, dim));
        for (int r = 1; r < rows; r++) values.AsSpan(0, dim).CopyTo(values.AsSpan(r * dim, dim));
        return values;
    }
}
