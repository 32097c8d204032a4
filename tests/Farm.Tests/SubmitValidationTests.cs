using Grpc.Core;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;
using RenderFarm.Shared;

namespace RenderFarm.Farm.Tests;

[Collection("farm")]
public sealed class SubmitValidationTests(FarmFixture fixture)
{
    private FarmCluster Farm => fixture.Cluster;

    private static JobHeader ValidHeader() => new()
    {
        Params = new GenerationParams { Width = 64, Height = 64, Steps = 4, GuidanceScale = 7.5f },
        Seeds = { 1 },
    };

    public static TheoryData<string, string, int> BadBatches => new()
    {
        // case name, expected text in the message, number of valid prompts before the problem
        { "empty batch", "no prompts", 0 },
        { "width not a multiple of 8", "params.width", 1 },
        { "height not a multiple of 8", "params.height", 1 },
        { "zero steps", "params.steps", 1 },
        { "unknown scheduler", "params.scheduler", 1 },
        { "NaN guidance", "params.guidance_scale", 1 },
        { "negative seed", "seeds", 1 },
        { "empty prompt after many valid ones", "prompts[300].prompt", 300 },
    };

    [Theory]
    [MemberData(nameof(BadBatches))]
    public async Task ABadBatchIsRejectedWithInvalidArgumentNamingTheFieldAndLeavesNothingQueued(string name, string field, int validPrompts)
    {
        var header = ValidHeader();
        var prompts = Enumerable.Range(0, validPrompts).Select(i => new PromptItem { Prompt = $"prompt {i}" }).ToList();
        switch (name)
        {
            case "width not a multiple of 8": header.Params.Width = 100; break;
            case "height not a multiple of 8": header.Params.Height = 60; break;
            case "zero steps": header.Params.Steps = 0; break;
            case "unknown scheduler": header.Params.Scheduler = "warp_drive"; break;
            case "NaN guidance": header.Params.GuidanceScale = float.NaN; break;
            case "negative seed": header.Seeds[0] = -5; break;
            case "empty prompt after many valid ones": prompts.Add(new PromptItem { Prompt = "   " }); break;
        }
        var queuedBefore = await QueuedShardsAsync();

        var error = await Assert.ThrowsAsync<RpcException>(() => Farm.SubmitAsync(header, prompts));

        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
        Assert.Contains(field, error.Status.Detail);
        Assert.Equal(queuedBefore, await QueuedShardsAsync());
        Assert.Empty(await JobKeysOfUnfinishedJobsAsync());
    }

    [Fact]
    public async Task AnUnknownJobIdIsNotFoundOnEveryCall()
    {
        foreach (var id in new[] { "aaaaaaaaaaaaaaaa", "../../etc/passwd", "" })
        {
            var get = await Assert.ThrowsAsync<RpcException>(() => Farm.Jobs.GetJobAsync(new GetJobRequest { JobId = id }).ResponseAsync);
            Assert.Equal(StatusCode.NotFound, get.StatusCode);

            using var watch = Farm.Jobs.WatchJob(new WatchJobRequest { JobId = id });
            var watchError = await Assert.ThrowsAsync<RpcException>(() => watch.ResponseStream.MoveNext(CancellationToken.None));
            Assert.Equal(StatusCode.NotFound, watchError.StatusCode);

            using var download = Farm.Jobs.DownloadResults(new DownloadResultsRequest { JobId = id });
            var downloadError = await Assert.ThrowsAsync<RpcException>(() => download.ResponseStream.MoveNext(CancellationToken.None));
            Assert.Equal(StatusCode.NotFound, downloadError.StatusCode);
        }
    }

    private async Task<long> QueuedShardsAsync() =>
        await Farm.Redis.KeyExistsAsync(FarmKeys.TaskStream(FarmCluster.Model))
            ? await Farm.Redis.StreamLengthAsync(FarmKeys.TaskStream(FarmCluster.Model))
            : 0;

    /// <summary>Keys of jobs that have no meta hash: what a half-accepted submission would leave behind.</summary>
    private async Task<List<string>> JobKeysOfUnfinishedJobsAsync()
    {
        var orphans = new List<string>();
        await foreach (var key in Farm.RedisAdmin.KeysAsync(pattern: "{job:*"))
        {
            var name = (string)key!;
            var tag = name[..(name.IndexOf('}') + 1)];
            if (!await Farm.Redis.KeyExistsAsync(tag + ":meta")) orphans.Add(key!);
        }
        return orphans;
    }
}
