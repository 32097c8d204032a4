using Grpc.Core;
using Microsoft.Extensions.Options;
using RenderFarm.Coordinator.Jobs;
using RenderFarm.Protocol;
using RenderFarm.Shared;

namespace RenderFarm.Coordinator.Tests.Jobs;

/// <summary>How a submission's refiner settings become a shard's, and how a base stage becomes its refiner stage.</summary>
public sealed class RefinerParamsTests
{
    private static readonly BatchValidator Validator = new(Options.Create(new CoordinatorOptions()));

    private static JobHeader Header(string refiner = "xl-refiner", float start = 0) =>
        new() { Params = new GenerationParams { Model = "xl", Width = 64, Height = 64, Steps = 20, GuidanceScale = 7, Refiner = refiner, RefinerStart = start } };

    [Fact]
    public void TheSwitchDefaultsToPointEightAndAPromptsColumnsOverrideTheJobs()
    {
        var header = Validator.Normalize(Header());
        Assert.Equal(0.8f, header.Params.RefinerStart);

        Assert.Same(header.Params, Validator.ParamsFor(new PromptItem { Prompt = "a" }, header.Params, 0));
        var started = Validator.ParamsFor(new PromptItem { Prompt = "a", RefinerStart = 0.6f }, header.Params, 1);
        Assert.Equal(("xl-refiner", 0.6f), (started.Refiner, started.RefinerStart));
        var other = Validator.ParamsFor(new PromptItem { Prompt = "a", Refiner = "xl-refiner-2" }, header.Params, 2);
        Assert.Equal(("xl-refiner-2", 0.8f), (other.Refiner, other.RefinerStart));
        // "none": the prompt renders with the base alone, and shares shards with other unrefined prompts of the model.
        var off = Validator.ParamsFor(new PromptItem { Prompt = "a", Refiner = "none" }, header.Params, 3);
        Assert.Equal(("", 0f), (off.Refiner, off.RefinerStart));
        var fromNone = Validator.ParamsFor(new PromptItem { Prompt = "a", Refiner = "xl-refiner" }, Validator.Normalize(Header("")).Params, 4);
        Assert.Equal(0.8f, fromNone.RefinerStart);
    }

    [Theory]
    [InlineData("bad name!", 0.8f, "params.refiner 'bad name!' is not a valid model name")]
    [InlineData("xl-refiner", 1f, "params.refiner_start must be a number strictly between 0 and 1")]
    [InlineData("xl-refiner", -0.2f, "params.refiner_start must be a number strictly between 0 and 1")]
    [InlineData("", 0.5f, "params.refiner_start needs a refiner")]
    public void AnUnusableRefinerIsRefusedNamingTheField(string refiner, float start, string expected)
    {
        var e = Assert.Throws<RpcException>(() => Validator.Normalize(Header(refiner, start)));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.StartsWith(expected, e.Status.Detail);
    }

    [Fact]
    public void Img2ImgAndInpaintingPromptsMayUseTheRefiner()
    {
        var header = Validator.Normalize(Header());
        var img2img = Validator.ParamsFor(new PromptItem { Prompt = "a", InitImage = "img", Strength = 0.6f }, header.Params, 6);
        Assert.Equal((InputMode.Image, "xl-refiner"), (img2img.InputMode, img2img.Refiner));
        var inpaint = Validator.ParamsFor(new PromptItem { Prompt = "a", InitImage = "img", MaskImage = "mask" }, header.Params, 7);
        Assert.Equal((InputMode.Inpaint, "xl-refiner"), (inpaint.InputMode, inpaint.Refiner));
    }

    [Fact]
    public void AnInpaintingRefinerStageKeepsEachImagesInitImageAndMask()
    {
        var p = Validator.Normalize(Header()).Params;
        p.InputMode = InputMode.Inpaint;
        var baseStage = new Shard { JobId = "j", ShardIndex = 0, Params = p, Images = { new ImageTask { Index = 0, Prompt = "a", InitImage = "init", MaskImage = "mask" } } };

        var stage = RefinerMessages.RefinerStage(baseStage, [RefinerMessages.ToBytes(new float[4 * 8 * 8])]);

        Assert.Equal(("init", "mask", 4 * 8 * 8), (stage.Images[0].InitImage, stage.Images[0].MaskImage, RefinerMessages.ToLatents(stage.Images).Length));
    }

    [Fact]
    public void TheRefinerStageLeavesTheBasesLorasAndInitImagesBehindAndKeepsWhatThePngsRecord()
    {
        var p = Validator.Normalize(Header()).Params;
        p.Loras.Add(new Lora { Name = "style", Weight = 0.5f });
        p.ControlNets.Add(new ControlNetUnit { Model = "canny", Image = "edges", Weight = 1 });
        p.InputMode = InputMode.Image;
        p.Strength = 0.6f;
        var baseStage = new Shard { JobId = "j", ShardIndex = 0, LoraKey = "style:0.5", Params = p, Images = { new ImageTask { Index = 0, Prompt = "a <lora:x:1>", InitImage = "init" } } };

        var stage = RefinerMessages.RefinerStage(baseStage, [RefinerMessages.ToBytes(new float[4 * 8 * 8])],
            new Dictionary<string, string> { ["style"] = "0123456789ab", ["x"] = "ba9876543210" });

        Assert.Equal(("", 0, ""), (stage.LoraKey, stage.Params.Loras.Count, stage.Images[0].InitImage));
        // Not applied, but recorded: the base's LoRAs (job-wide, and by name those of the tags) with their hashes.
        Assert.Equal(["style", "x"], RefinerMessages.BaseLoraNames(baseStage).Order());
        Assert.Equal(("style", 0.5f), (stage.BaseLoras.Single().Name, stage.BaseLoras.Single().Weight));
        Assert.Equal("ba9876543210", stage.BaseLoraHashes["x"]);
        Assert.Equal(("canny", 0.6f, "a <lora:x:1>"), (stage.Params.ControlNets.Single().Model, stage.Params.Strength, stage.Images[0].Prompt));
    }

    [Fact]
    public void WithHiresFixTheHandedOverLatentsAreTheSecondPasssSize()
    {
        var p = new GenerationParams { Width = 64, Height = 48, Hires = new HiresFix { Scale = 2, Denoise = 0.5f } };
        Assert.Null(RefinerMessages.LatentsProblem(RefinerMessages.ToBytes(new float[4 * 16 * 12]), p));
        // Checked against the second pass's 16 × 12 plane, not the first pass's 8 × 6.
        Assert.NotNull(RefinerMessages.LatentsProblem(RefinerMessages.ToBytes(new float[3 * 8 * 6]), p));
    }

    [Fact]
    public void TheRefinerStageIsTheSameShardForTheRefinerWithEachImagesLatents()
    {
        var baseStage = new Shard
        {
            JobId = "j", ShardIndex = 3, LoraKey = "", Params = Validator.Normalize(Header()).Params,
            Images = { new ImageTask { Index = 5, Prompt = "a", Seed = 1 }, new ImageTask { Index = 6, Prompt = "b", Seed = 2 } },
        };
        Assert.True(RefinerMessages.IsBaseStage(baseStage));
        float[] first = [.. Enumerable.Range(0, 4 * 8 * 8).Select(i => (float)i)], second = [.. first.Select(v => -v)];

        var stage = RefinerMessages.RefinerStage(baseStage, [RefinerMessages.ToBytes(first), RefinerMessages.ToBytes(second)]);

        Assert.True(RefinerMessages.IsRefinerStage(stage) && !RefinerMessages.IsBaseStage(stage));
        Assert.Equal(("xl-refiner", "xl", 3u), (stage.Params.Model, stage.Refines, stage.ShardIndex));
        Assert.Equal([5u, 6u], stage.Images.Select(i => i.Index));
        Assert.Equal([.. first, .. second], RefinerMessages.ToLatents(stage.Images));
        Assert.True(baseStage.Images.All(i => i.InitLatents.IsEmpty)); // the base stage itself is unchanged
    }

    [Fact]
    public void LatentsMustBeWholeChannelsOfTheImagesLatentSizeAndFinite()
    {
        var p = new GenerationParams { Width = 64, Height = 48 };
        Assert.Null(RefinerMessages.LatentsProblem(RefinerMessages.ToBytes(new float[4 * 8 * 6]), p));
        Assert.NotNull(RefinerMessages.LatentsProblem(RefinerMessages.ToBytes(new float[4 * 8 * 6 - 1]), p));
        Assert.NotNull(RefinerMessages.LatentsProblem(RefinerMessages.ToBytes(new float[17 * 8 * 6]), p));
        Assert.NotNull(RefinerMessages.LatentsProblem([], p));
        var nan = new float[4 * 8 * 6];
        nan[7] = float.NaN;
        Assert.Equal("latents that are not all finite", RefinerMessages.LatentsProblem(RefinerMessages.ToBytes(nan), p));
    }

    private static WorkerInfo Worker(string model, uint channels, bool refiner) =>
        new() { WorkerId = model + "-worker", Models = { model }, ModelShapes = { new ModelShape { Model = model, LatentChannels = channels, Refiner = refiner } } };

    [Fact]
    public void TheFleetSaysWhetherARefinerFitsItsBase()
    {
        var fleet = new FleetCapacity([Worker("xl", 4, false), Worker("xl-refiner", 4, true), Worker("flux-ish", 16, false), Worker("sd15", 4, false)], 4);
        GenerationParams P(string model, string refiner) => new() { Model = model, Refiner = refiner, RefinerStart = 0.8f, Width = 64, Height = 64 };

        Assert.Null(fleet.WhyRefinerUnusable(P("xl", "xl-refiner")));
        Assert.Null(fleet.WhyRefinerUnusable(P("xl", "sd15"))); // any model of the same latent channels
        Assert.Null(fleet.WhyRefinerUnusable(P("xl", "")));
        Assert.Equal("refiner 'flux-ish' does not fit model 'xl': it works in 16 latent channels, the model in 4 " +
                     "(a refiner must be an SDXL refiner or a model of the same latent channels)", fleet.WhyRefinerUnusable(P("xl", "flux-ish")));
        Assert.StartsWith("model 'xl-refiner' is an SDXL refiner", fleet.WhyRefinerUnusable(P("xl-refiner", "xl")));
        Assert.Equal("refiner 'ghost' is not held by any online worker (online models: flux-ish, sd15, xl, xl-refiner)", fleet.WhyRefinerUnusable(P("xl", "ghost")));
        Assert.Equal("refiner 'ghost' is not held by any online worker (no worker is online)", new FleetCapacity([], 4).WhyRefinerUnusable(P("xl", "ghost")));
    }
}
