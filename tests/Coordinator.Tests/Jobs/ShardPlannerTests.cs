using RenderFarm.Coordinator.Jobs;
using RenderFarm.GenerationRules;
using RenderFarm.Protocol;

namespace RenderFarm.Coordinator.Tests.Jobs;

public sealed class ShardPlannerTests
{
    private static readonly GenerationParams Square = new() { Model = "sd15", Width = 512, Height = 512, Steps = 20, Scheduler = "euler" };
    private static readonly GenerationParams Wide = new(Square) { Width = 768 };

    private static ImageTask Image(uint index) => new() { Index = index, Prompt = $"prompt {index}", Seed = index };

    private static WorkerInfo Worker(string model, uint maxBatch) => new() { WorkerId = $"w{maxBatch}", Models = { model }, MaxBatch = maxBatch };

    [Fact]
    public void ImagesOfOneSettingFillShardsOfTheFleetsSizeNumberedFromTheFirstIndex()
    {
        var planner = new ShardPlanner("job", new FleetCapacity([Worker("sd15", 4), Worker("sd15", 3)], cap: 8), maxAttempts: 2, firstShardIndex: 5);

        var full = Enumerable.Range(0, 7).Select(i => planner.Add(Image((uint)i), Square, LoraSet.Empty)).OfType<Shard>().ToList();
        var rest = planner.CloseAll();

        // The smallest batch of the model's workers sizes its shards: 3, 3, then the 1 left when the batch ends.
        Assert.Equal([5u, 6u, 7u], full.Concat(rest).Select(s => s.ShardIndex));
        Assert.Equal([[0u, 1u, 2u], [3u, 4u, 5u], [6u]], full.Concat(rest).Select(s => s.Images.Select(i => i.Index).ToArray()));
        Assert.All(full.Concat(rest), s => Assert.Equal(("job", Square, 2u), (s.JobId, s.Params, s.MaxAttempts)));
        Assert.Equal(3u, planner.ShardCount);
    }

    [Fact]
    public void ImagesOfOtherSettingsGetShardsOfTheirOwnAndNoWorkerMeansTheCap()
    {
        var planner = new ShardPlanner("job", new FleetCapacity([], cap: 2), maxAttempts: 3);

        Assert.Null(planner.Add(Image(0), Square, LoraSet.Empty));
        Assert.Null(planner.Add(Image(1), Wide, LoraSet.Empty));
        var square = planner.Add(Image(2), Square, LoraSet.Empty);
        var rest = planner.CloseAll();

        Assert.Equal(0u, square!.ShardIndex);
        Assert.Equal([0u, 2u], square.Images.Select(i => i.Index));
        var wide = Assert.Single(rest);
        Assert.Equal((1u, Wide, 1), (wide.ShardIndex, wide.Params, wide.Images.Count));
        Assert.Empty(planner.CloseAll());
    }

    [Fact]
    public void ImagesWithOtherLoraSetsGetShardsOfTheirOwnKeyedByTheSetWhateverItsOrder()
    {
        var planner = new ShardPlanner("job", new FleetCapacity([], cap: 8), maxAttempts: 3);
        var withStyle = new GenerationParams(Square) { Loras = { new Lora { Name = "style", Weight = 0.8f } } };
        ImageTask Prompted(uint index, string prompt) => new() { Index = index, Prompt = prompt, Seed = index };

        // The job's --lora and a prompt's tags make one set: these three images ask for the same variant.
        var images = new (ImageTask Image, GenerationParams Params)[]
        {
            (Prompted(0, "a plain cat"), Square),
            (Prompted(1, "a cat <lora:style:0.8> <lora:detail:0.5>"), Square),
            (Prompted(2, "a cat <lora:detail:0.5>"), withStyle),
            (Prompted(3, "a cat <lora:detail:0.5> <lora:style:0.8>"), Square),
            (Prompted(4, "a cat <lora:style:0.8>"), Square),
        };
        foreach (var (image, parameters) in images) Assert.Null(planner.Add(image, parameters, ShardPlanner.LorasOf(image, parameters)));
        var shards = planner.CloseAll();

        Assert.Equal([[0u], [1u, 3u], [2u], [4u]], shards.Select(s => s.Images.Select(i => i.Index).ToArray()));
        Assert.Equal("", shards[0].LoraKey);
        Assert.Equal(shards[1].LoraKey, shards[2].LoraKey); // same variant, other settings (params.loras): separate shards
        Assert.Equal(LoraSet.Of(new LoraWeight("style", 0.8f), new LoraWeight("detail", 0.5f)).Key, shards[1].LoraKey);
        Assert.Equal(LoraSet.Of(new LoraWeight("style", 0.8f)).Key, shards[3].LoraKey);
    }
}
