using RenderFarm.Diffusion;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests;

[Collection("farm")]
public sealed class EndToEndTests(FarmFixture fixture)
{
    private FarmCluster Farm => fixture.Cluster;

    private static JobHeader Header(uint steps, params long[] seeds)
    {
        var header = new JobHeader
        {
            Params = new GenerationParams { Width = 64, Height = 64, Steps = steps, GuidanceScale = 7.5f, Scheduler = "euler" },
        };
        header.Seeds.AddRange(seeds);
        return header;
    }

    [Fact]
    public async Task TwelvePromptsTimesTwoSeedsYieldTwentyFourDistinctPngsWithTheirOwnPromptAndSeed()
    {
        const uint steps = 6;
        var prompts = Enumerable.Range(0, 12).Select(i => $"a photo of cat number {i} on a red table").ToList();
        var submitted = await Farm.SubmitAsync(Header(steps, 11, 22), prompts.Select(p => new PromptItem { Prompt = p }));
        Assert.Equal(24u, submitted.ImageCount);
        Assert.Equal(6u, submitted.ShardCount);

        var events = await Farm.WatchToEndAsync(submitted.JobId, TimeSpan.FromMinutes(3));

        var finished = events[^1].JobFinished;
        Assert.NotNull(finished);
        Assert.Equal(JobState.Completed, finished.State);
        Assert.Equal(24u, finished.ImagesDone);
        // Per-step progress for every shard: each of the 6 shards reported every step 1..N.
        for (uint shard = 0; shard < submitted.ShardCount; shard++)
        {
            var reported = events.Where(e => e.Step?.ShardIndex == shard).Select(e => e.Step.Step).ToHashSet();
            Assert.True(reported.SetEquals(Enumerable.Range(1, (int)steps).Select(s => (uint)s)),
                $"shard {shard} reported steps [{string.Join(",", reported.Order())}]");
        }
        Assert.Equal(24, events.Count(e => e.ImageDone is not null));

        var images = await Farm.Jobs.DownloadAllAsync(submitted.JobId);
        Assert.Equal(24, images.Count);
        Assert.Equal(24, images.Select(i => i.Sha256).Distinct().Count());
        foreach (var image in images)
        {
            // Expansion order: prompt-major, then seed.
            var expectedPrompt = prompts[(int)image.Info.Index / 2];
            var expectedSeed = image.Info.Index % 2 == 0 ? 11 : 22;
            Assert.Equal(image.Info.Sha256, image.Sha256);
            var (width, height, text) = PngMetadata.Read(image.Png);
            Assert.Equal((64, 64), (width, height));
            var parameters = text["parameters"];
            Assert.StartsWith(expectedPrompt + "\n", parameters);
            Assert.Contains($"Seed: {expectedSeed},", parameters);
            Assert.Contains("Steps: 6,", parameters);
            Assert.Contains("Size: 64x64", parameters);
        }

        var status = await Farm.Jobs.GetJobAsync(new GetJobRequest { JobId = submitted.JobId });
        Assert.Equal(JobState.Completed, status.State);
        Assert.Equal((24u, 0u, 6u), (status.ImagesDone, status.ImagesFailed, status.ShardsDone));
    }

    [Fact]
    public async Task TheSamePromptSeedAndParametersGiveByteIdenticalPngsOnASecondRun()
    {
        var prompt = new[] { new PromptItem { Prompt = "an oil painting of a lighthouse in a storm" } };
        var first = await Farm.SubmitAsync(Header(5, 1234), prompt);
        await Farm.WatchToEndAsync(first.JobId, TimeSpan.FromMinutes(2));
        var second = await Farm.SubmitAsync(Header(5, 1234), prompt);
        await Farm.WatchToEndAsync(second.JobId, TimeSpan.FromMinutes(2));
        var other = await Farm.SubmitAsync(Header(5, 1235), prompt);
        await Farm.WatchToEndAsync(other.JobId, TimeSpan.FromMinutes(2));

        var a = Assert.Single(await Farm.Jobs.DownloadAllAsync(first.JobId));
        var b = Assert.Single(await Farm.Jobs.DownloadAllAsync(second.JobId));
        var c = Assert.Single(await Farm.Jobs.DownloadAllAsync(other.JobId));
        Assert.Equal(a.Png, b.Png);
        Assert.NotEqual(a.Sha256, c.Sha256);
    }
}
