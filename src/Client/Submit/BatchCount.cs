using RenderFarm.Client.Prompts;

namespace RenderFarm.Client.Submit;

/// <summary>
/// Counts from reading a prompt file once; input images are distinct files (init images and masks); UNet steps are
/// every image's (<see cref="DryRunReport.StepsPerImage"/>, with its prompt's own steps, guidance, img2img strength and hires).
/// </summary>
public sealed record BatchCount(long Prompts, long Images, long PromptsWithOwnSeeds, long PromptsWithInitImage = 0,
    int InputImages = 0, long InputBytes = 0, long UnetSteps = 0, long PromptsWithControlAndRefiner = 0)
{
    /// <summary>
    /// What <c>farm submit</c> tells (stderr; the dry run's report) when prompts ask for ControlNets and a refiner: the
    /// ControlNets steer the base's steps only (diffusers and A1111 have no refiner ControlNet); null when none do.
    /// </summary>
    public string? ControlWithRefinerNote => PromptsWithControlAndRefiner == 0 ? null
        : $"note: {PromptsWithControlAndRefiner} of {Prompts} prompts use ControlNets with a refiner: the ControlNets steer the base's " +
          "steps only, up to the switch; the refiner renders the rest without them (its PNGs still list them)";

    /// <summary>
    /// Reads the whole file once (the validation pass): every line is checked, prompts and images counted, and each
    /// distinct init image and mask checked (exists, readable, PNG or JPEG) without reading its bytes.
    /// </summary>
    public static async Task<BatchCount> CountAsync(PromptSource source, JobPlan plan, CancellationToken cancellationToken)
    {
        long prompts = 0, images = 0, ownSeeds = 0, unetSteps = 0, controlWithRefiner = 0;
        var census = new InputImageCensus(plan.Inputs, source.DisplayName);
        using var reader = source.OpenReader();
        await foreach (var entry in source.ReadAsync(reader, cancellationToken))
        {
            prompts++;
            if (HiresSettings.Problem(entry.Hires, plan.Generation.Hires) is { } hiresProblem)
            {
                throw new PromptFileException(source.DisplayName, entry.Line, hiresProblem);
            }

            var entryImages = plan.Seeds.ImagesFor(entry, plan.ImagesPerPrompt);
            images += entryImages;
            unetSteps += DryRunReport.EstimateUnetSteps(entryImages, DryRunReport.StepsPerImage(plan.Generation, entry, plan.Inputs.For(entry, source.DisplayName)),
                entry.Overrides?.Guidance ?? plan.Generation.GuidanceScale);
            if (entry.Seeds is not null)
            {
                ownSeeds++;
            }

            // A prompt's refiner column overrides --refiner ("none" arrives as empty: no refiner).
            if (plan.Inputs.ControlNetsFor(entry).Count > 0 && (entry.Refiner ?? plan.Generation.Refiner).Length > 0)
            {
                controlWithRefiner++;
            }

            census.Add(entry);
        }

        return new BatchCount(prompts, images, ownSeeds, census.PromptsWithInitImage, census.Files, census.Bytes, unetSteps, controlWithRefiner);
    }
}
