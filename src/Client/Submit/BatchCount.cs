using RenderFarm.Client.Prompts;

namespace RenderFarm.Client.Submit;

/// <summary>
/// Counts from reading a prompt file once; input images are distinct files (init images and masks); UNet steps are
/// every image's (<see cref="DryRunReport.StepsPerImage"/>, with its prompt's own steps, guidance, img2img strength and hires).
/// </summary>
public sealed record BatchCount(long Prompts, long Images, long PromptsWithOwnSeeds, long PromptsWithInitImage = 0,
    int InputImages = 0, long InputBytes = 0, long UnetSteps = 0)
{
    /// <summary>
    /// Reads the whole file once (the validation pass): every line is checked, prompts and images counted, and each
    /// distinct init image and mask checked (exists, readable, PNG or JPEG) without reading its bytes.
    /// </summary>
    public static async Task<BatchCount> CountAsync(PromptSource source, JobPlan plan, CancellationToken cancellationToken)
    {
        long prompts = 0, images = 0, ownSeeds = 0, unetSteps = 0;
        var census = new InputImageCensus(plan.Inputs, source.DisplayName);
        using var reader = source.OpenReader();
        await foreach (var entry in source.ReadAsync(reader, cancellationToken))
        {
            prompts++;
            var entryImages = plan.Seeds.ImagesFor(entry, plan.ImagesPerPrompt);
            images += entryImages;
            unetSteps += DryRunReport.EstimateUnetSteps(entryImages, DryRunReport.StepsPerImage(plan.Generation, entry, plan.Inputs.For(entry, source.DisplayName)),
                entry.Overrides?.Guidance ?? plan.Generation.GuidanceScale);
            if (entry.Seeds is not null)
            {
                ownSeeds++;
            }

            census.Add(entry);
        }

        return new BatchCount(prompts, images, ownSeeds, census.PromptsWithInitImage, census.Files, census.Bytes, unetSteps);
    }
}
