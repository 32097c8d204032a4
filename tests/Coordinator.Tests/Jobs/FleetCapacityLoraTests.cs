using RenderFarm.Coordinator.Jobs;
using RenderFarm.GenerationRules;
using RenderFarm.Protocol;

namespace RenderFarm.Coordinator.Tests.Jobs;

/// <summary>
/// What submit refuses about a request's LoRAs, from what the online workers of its model offer (issue 16): a name none
/// offers, or a file made for another model family, whose worker therefore offers it for none of its models.
/// </summary>
public sealed class FleetCapacityLoraTests
{
    private static LoraInfo Lora(string name, string family, params string[] fitsModels) =>
        new() { Name = name, ShortHash = "0123456789ab", Family = family, Models = { fitsModels } };

    /// <summary>A worker of sd15 (an SD 1.x model) and sdxl, offering an SD LoRA that fits sd15 and an SDXL LoRA that fits sdxl.</summary>
    private static FleetCapacity Fleet() => new(
    [
        new WorkerInfo
        {
            WorkerId = "w", Models = { "sd15", "sdxl" },
            Loras = { Lora("watercolor", "sd", "sd15"), Lora("xl-detail", "sdxl", "sdxl"), Lora("any", "", "sd15", "sdxl") },
        },
    ], cap: 8);

    private static LoraSet Set(string name) => LoraSet.Of(new LoraWeight(name, 0.7f));

    [Fact]
    public void AnSdxlLoraOnAnSdModelIsRefusedNamingItsFamilyAndTheModel() =>
        Assert.Equal("LoRA 'xl-detail' (an SDXL LoRA) does not fit model 'sd15', which is of another family",
            Fleet().WhyLorasUnavailable("sd15", Set("xl-detail")));

    [Fact]
    public void AnSdLoraOnAnSdxlModelIsRefusedTheSameWay() =>
        Assert.Equal("LoRA 'watercolor' (an SD 1.x/2.x LoRA) does not fit model 'sdxl', which is of another family",
            Fleet().WhyLorasUnavailable("sdxl", Set("watercolor")));

    [Fact]
    public void ALoraNoWorkerOffersIsRefusedListingWhatIsOffered() =>
        Assert.Equal("LoRA 'nosuch' is not offered by any online worker of model 'sd15' (they offer: any, watercolor, xl-detail)",
            Fleet().WhyLorasUnavailable("sd15", Set("nosuch")));

    [Fact]
    public void LorasThatFitTheModelNoLorasAndAModelNoWorkerServesYetAreAccepted()
    {
        var fleet = Fleet();
        Assert.Null(fleet.WhyLorasUnavailable("sd15", LoraSet.Of(new LoraWeight("watercolor", 0.7f), new LoraWeight("any", 1f))));
        Assert.Null(fleet.WhyLorasUnavailable("sdxl", Set("xl-detail")));
        Assert.Null(fleet.WhyLorasUnavailable("sd15", LoraSet.Empty));
        // No online worker of the model: the job waits for one, as it does without LoRAs.
        Assert.Null(fleet.WhyLorasUnavailable("sd21", Set("xl-detail")));
    }
}
