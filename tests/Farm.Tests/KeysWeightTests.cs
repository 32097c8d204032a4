using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;
using RenderFarm.Coordinator.Security;
using RenderFarm.FarmState;
using RenderFarm.FarmState.TaskStreams;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// The coordinator's <c>keys weight</c> command on a real Redis of its own: how a tenant's weight shares the fair queue's
/// turns, also for shards queued before it was set. (The fair queue itself is tested in FarmState.Tests.)
/// </summary>
public sealed class KeysWeightTests(OwnRedis fixture) : IClassFixture<OwnRedis>
{
    private ShardQueue Queue => new(fixture.Multiplexer, NullLogger<ShardQueue>.Instance);

    /// <summary>Queues a job of twenty one-image shards.</summary>
    private async Task QueueAsync(string model, string tenant, string jobId, long order) =>
        await Queue.EnqueueAsync(new QueuedJob(jobId, tenant, order), Priority.Normal, Enumerable.Range(0, 20).Select(i => new Shard
        {
            JobId = jobId, ShardIndex = (uint)i, Images = { new ImageTask() },
            Params = new GenerationParams { Model = model, Width = 512, Height = 512, Steps = 10 },
        }.ToByteArray()));

    [Fact]
    public async Task KeysWeightGivesATenantThatShareOfTheTurnsAlsoForShardsQueuedBefore()
    {
        const string model = "fair-weight";
        var stream = FarmKeys.TaskStream(model);
        await QueueAsync(model, "heavy", "job-heavy", 1);
        await QueueAsync(model, "light", "job-light", 2);
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["Farm:Redis"] = fixture.ConnectionString }).Build();
        var output = new StringWriter();

        var set = await KeysCommand.RunAsync(["keys", "weight", "--tenant", "heavy", "--set", "3"], configuration, output, TextWriter.Null);
        var shown = await KeysCommand.RunAsync(["keys", "weight"], configuration, output, TextWriter.Null);
        var refused = await KeysCommand.RunAsync(["keys", "weight", "--tenant", "light", "--set", "0"], configuration, TextWriter.Null, TextWriter.Null);

        Assert.Equal((0, 0, 2), (set, shown, refused));
        Assert.Equal(["3", "heavy 3"], output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        var claimed = new List<string>();
        for (var i = 0; i < 16; i++) claimed.Add((await Queue.ReadNewAsync(stream, "w"))!.Shard.JobId);
        Assert.Equal(12, claimed.Count(j => j == "job-heavy"));
        Assert.Equal(4, claimed.Count(j => j == "job-light"));
    }

    [Fact]
    public async Task KeysWeightRefusesAWeightSoSmallThatTheOtherTenantsTurnsWouldStopCounting()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["Farm:Redis"] = fixture.ConnectionString }).Build();
        var error = new StringWriter();

        var refused = await KeysCommand.RunAsync(["keys", "weight", "--tenant", "tiny", "--set", "1e-300"], configuration, TextWriter.Null, error);

        Assert.Equal(2, refused);
        Assert.Contains("from 0.001 to 1000", error.ToString());
        Assert.Equal(1, await new TenantWeights(fixture.Multiplexer).OfAsync("tiny"));
    }
}
