using RenderFarm.Diffusion;
using RenderFarm.Protocol;
using StackExchange.Redis;
using RenderFarm.FarmState;
using RenderFarm.Shared;
using RenderFarm.GenerationRules;

namespace RenderFarm.Worker;

/// <summary>
/// Turns a shard into the pipeline's batch request, fetching its init images, masks and control images from the job's
/// inputs hash in one round trip. Images that share an input share one byte array, so the pipeline encodes it once.
/// </summary>
public sealed class ShardRequestBuilder(IConnectionMultiplexer redis)
{
    public async Task<GenerationRequest> BuildAsync(Shard shard)
    {
        var p = shard.Params;
        var refining = RefinerMessages.IsRefinerStage(shard);
        var inputs = await LoadInputsAsync(shard, refining);
        var images = shard.Images.Select(i => new ImagePrompt(i.Prompt, i.NegativePrompt, i.Seed)
        {
            InitImage = i.InitImage.Length > 0 ? inputs[i.InitImage] : null,
            MaskImage = i.MaskImage.Length > 0 ? inputs[i.MaskImage] : null,
        }).ToList();
        return new GenerationRequest(images, (int)p.Width, (int)p.Height, (int)p.Steps, p.GuidanceScale, p.Scheduler, p.Model)
        {
            // A refiner stage continuing an img2img base is told the base's strength (its start, and its PNGs' parameters).
            Strength = p.InputMode != InputMode.Text && p.Strength > 0 ? p.Strength
                : refining && p.InputMode == InputMode.Image ? StrengthRule.DefaultImage : null,
            // The job's and the prompt's LoRAs; the tags in the prompts stay in their text (and so in the PNGs' parameters).
            Loras = LoraMessages.ToSet(p.Loras),
            // Live previews (the job asked for them): the pipeline snapshots the latents only on those steps.
            Previews = shard.PreviewEvery > 0,
            PreviewEvery = (int)Math.Max(1, shard.PreviewEvery),
            Hires = p.Hires is { } hires ? new Diffusion.HiresFix(hires.Scale, hires.Denoise, (int)hires.Steps, UpscaleMessages.HiresUpscaler(hires)) : null,
            // The scale the coordinator recorded, which the results are checked against (a differing local file is resized to it).
            Upscale = p.Upscaler.Length > 0 ? new UpscaleRequest(p.Upscaler, p.UpscaleFactor > 0 ? (int)p.UpscaleFactor : null) : null,
            ControlNets = refining ? [] : ControlNetUnits(p, c => inputs[c.Image]),
            // The base's ControlNets steered the base's stage; the refiner's PNGs record them without their images.
            BaseControlNets = refining ? ControlNetUnits(p, _ => []) : [],
            // Base + refiner: the base's stage stops at the switch (its latents are the result); the refiner's continues them.
            DenoisingEnd = RefinerMessages.IsBaseStage(shard) ? p.RefinerStart : null,
            DenoisingStart = refining ? p.RefinerStart : null,
            InitLatents = refining ? RefinerMessages.ToLatents(shard.Images) : null,
            BaseModel = refining ? shard.Refines : null,
            // The base's LoRAs, not applied here; its PNGs record them with the hashes the base's workers offered.
            BaseLoras = refining ? LoraMessages.ToSet(shard.BaseLoras) : LoraSet.Empty,
            BaseLoraHashes = shard.BaseLoraHashes,
            // The prompts' LoRA tags were the base's to render (they stay in the text, and so in the parameters).
            ApplyPromptLoras = !refining,
        };
    }

    private static Diffusion.ControlNets.ControlNetUnit[] ControlNetUnits(GenerationParams p, Func<ControlNetUnit, byte[]> image) =>
        p.ControlNets.Select(c => new Diffusion.ControlNets.ControlNetUnit(c.Model, image(c), c.Weight, c.Module.Length > 0 ? c.Module : "none",
            c.GuidanceStart, c.HasGuidanceEnd ? c.GuidanceEnd : 1, c.GuessMode)).ToArray();

    /// <param name="refining">A refiner stage: its control images were the base's (img2img's init images are in its latents; inpainting's come with their masks).</param>
    private async Task<Dictionary<string, byte[]>> LoadInputsAsync(Shard shard, bool refining)
    {
        var fields = shard.Images.SelectMany(i => new[] { i.InitImage, i.MaskImage }).Concat(refining ? [] : shard.Params.ControlNets.Select(c => c.Image))
            .Where(f => f.Length > 0).Distinct().ToArray();
        var inputs = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        if (fields.Length == 0) return inputs;
        var values = await redis.GetDatabase().HashGetAsync(FarmKeys.JobInputs(shard.JobId), [.. fields.Select(f => (RedisValue)f)]);
        for (var n = 0; n < fields.Length; n++)
        {
            // Gone only if the job was deleted under the shard: fail it with a message that says so (the shard's input,
            // not this worker, is what is missing).
            inputs[fields[n]] = values[n].IsNull
                ? throw new GenerationFailedException(GenerationFailureKind.Input,
                    $"input image {fields[n][..Math.Min(12, fields[n].Length)]} of job {shard.JobId} is no longer stored")
                : (byte[])values[n]!;
        }
        return inputs;
    }
}
