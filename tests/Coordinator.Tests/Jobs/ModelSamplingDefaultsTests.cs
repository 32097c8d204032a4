using Microsoft.Extensions.Options;
using RenderFarm.Coordinator.Jobs;
using RenderFarm.Protocol;

namespace RenderFarm.Coordinator.Tests.Jobs;

/// <summary>The settings a submission leaves to the model, filled from what the model's workers reported.</summary>
public sealed class ModelSamplingDefaultsTests
{
    private static readonly BatchValidator Validator = new(Options.Create(new CoordinatorOptions { DefaultModel = "sd15" }));

    private static readonly Dictionary<string, SamplingDefaults> Reported = new()
    {
        ["turbo"] = new() { Model = "turbo", Scheduler = "euler", Steps = 1, GuidanceScale = 0, Kind = "turbo" },
        ["lcm"] = new() { Model = "lcm", Scheduler = "lcm", Steps = 4, GuidanceScale = 8.5f, Kind = "lcm" },
        ["liar"] = new() { Model = "liar", Scheduler = "heun", Steps = 5000, GuidanceScale = float.NaN },
    };

    private static JobHeader Header(string model, LeftToModel? left) => new()
    {
        Params = new GenerationParams { Model = model, Width = 512, Height = 512, Steps = 20, GuidanceScale = 7.5f, Scheduler = "euler_a" },
        LeftToModel = left,
    };

    private static readonly LeftToModel All = new() { Steps = true, GuidanceScale = true, Scheduler = true };

    private static (uint Steps, float Guidance, string Scheduler) Of(GenerationParams p) => (p.Steps, p.GuidanceScale, p.Scheduler);

    [Fact]
    public void WhatIsLeftToTheModelTakesItsReportedDefaults()
    {
        Assert.Equal((1u, 0f, "euler"), Of(Validator.Normalize(Header("turbo", All), Reported).Params));
        Assert.Equal((4u, 8.5f, "lcm"), Of(Validator.Normalize(Header("lcm", All), Reported).Params));
    }

    [Fact]
    public void OnlyTheSettingsLeftToTheModelChange()
    {
        var p = Validator.Normalize(Header("lcm", new LeftToModel { Steps = true }), Reported).Params;
        Assert.Equal((4u, 7.5f, "euler_a"), Of(p));
    }

    [Fact]
    public void NothingLeftOrNothingReportedKeepsTheSubmittedValues()
    {
        Assert.Equal((20u, 7.5f, "euler_a"), Of(Validator.Normalize(Header("lcm", null), Reported).Params));
        Assert.Equal((20u, 7.5f, "euler_a"), Of(Validator.Normalize(Header("sd15", All), Reported).Params));
        Assert.Equal((20u, 7.5f, "euler_a"), Of(Validator.Normalize(Header("lcm", All), null).Params));
    }

    [Fact]
    public void AReportThatWouldNotValidateIsIgnored() =>
        Assert.Equal((20u, 7.5f, "euler_a"), Of(Validator.Normalize(Header("liar", All), Reported).Params));

    [Fact]
    public void APromptOnAnotherModelTakesThatModelsDefaultsOrTheSubmittedValuesAndItsOwnSettingsWin()
    {
        var submitted = Header("turbo", All);
        var header = Validator.Normalize(submitted, Reported);
        var sampling = Validator.Sampling(submitted, Reported);

        Assert.Equal((4u, 8.5f, "lcm"), Of(Validator.ParamsFor(new PromptItem { Prompt = "x", Model = "lcm" }, header.Params, 0, sampling)));
        // An ordinary model gets what was submitted, not the header model's turbo settings.
        Assert.Equal((20u, 7.5f, "euler_a"), Of(Validator.ParamsFor(new PromptItem { Prompt = "x", Model = "sd15" }, header.Params, 1, sampling)));
        Assert.Equal((4u, 2f, "lcm"), Of(Validator.ParamsFor(new PromptItem { Prompt = "x", Model = "lcm", GuidanceScale = 2 }, header.Params, 2, sampling)));
        Assert.Equal((2u, 0f, "euler"), Of(Validator.ParamsFor(new PromptItem { Prompt = "x", Steps = 2 }, header.Params, 3, sampling)));
    }
}
