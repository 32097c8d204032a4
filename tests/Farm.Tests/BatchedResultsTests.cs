using System.Globalization;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using RenderFarm.Diffusion.Imaging;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.FarmState;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// A worker sends a shard's finished images as one results message, and the coordinator applies them with a fixed
/// number of Redis commands per batch instead of per image (counted by Redis itself, INFO commandstats, with the
/// farm's gauge sampler off so nothing else reads the task streams meanwhile). First result wins within a batch and
/// across batches, and an image that does not check out is discarded alone.
/// </summary>
public sealed class BatchedResultsTests : IAsyncLifetime
{
    private const int ShardSize = 8;
    private FarmCluster _farm = null!;

    public async Task InitializeAsync() =>
        _farm = await FarmCluster.StartAsync(workers: 0, shardSize: ShardSize, configure: s => s["Farm:Telemetry:GaugeSampleMilliseconds"] = "600000");

    public async Task DisposeAsync() => await _farm.DisposeAsync();

    private static byte[] Png(int width, int height, byte shade) =>
        PngEncoder.Encode(Enumerable.Repeat(shade, width * height * 3).ToArray(), width, height);

    private async Task<AsyncDuplexStreamingCall<WorkerMessage, CoordinatorMessage>> ConnectAsync(GrpcChannel channel, string workerId)
    {
        var call = new WorkerService.WorkerServiceClient(channel).Connect();
        await call.RequestStream.WriteAsync(new WorkerMessage { Hello = new WorkerHello { WorkerId = workerId, Models = { FarmCluster.Model }, MaxBatch = ShardSize } });
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        Assert.True(call.ResponseStream.Current.Welcome.BatchedResults);
        return call;
    }

    /// <summary>Calls of each Redis command since the last CONFIG RESETSTAT.</summary>
    private async Task<Dictionary<string, long>> CommandCallsAsync()
    {
        var info = (string)(await _farm.Redis.ExecuteAsync("INFO", "commandstats"))!;
        var calls = new Dictionary<string, long>();
        foreach (var line in info.Split('\n').Select(l => l.Trim()).Where(l => l.StartsWith("cmdstat_", StringComparison.Ordinal)))
        {
            var name = line["cmdstat_".Length..line.IndexOf(':')];
            var field = line.Split(',').First(f => f.Contains("calls=", StringComparison.Ordinal));
            calls[name] = long.Parse(field[(field.IndexOf('=') + 1)..], CultureInfo.InvariantCulture);
        }
        return calls;
    }

    /// <summary>Sends <paramref name="messages"/> and returns the Redis commands they cost, once the shard is acknowledged.</summary>
    private async Task<Dictionary<string, long>> CostOfAsync(IAsyncStreamWriter<WorkerMessage> stream, ShardRef shard, IEnumerable<WorkerMessage> messages)
    {
        await _farm.Redis.ExecuteAsync("CONFIG", "RESETSTAT");
        foreach (var message in messages) await stream.WriteAsync(message);
        // The last image acknowledges the shard: then every message has been applied (one stream, in order).
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var polls = 0;
        while (++polls > 0 && (await _farm.Redis.StreamPendingMessagesAsync(shard.Stream, FarmKeys.WorkerGroup, 1, StackExchange.Redis.RedisValue.Null, shard.EntryId, shard.EntryId)).Length > 0)
            await Task.Delay(10, cts.Token); // polling Redis for the outcome, not a wait for time to pass
        var calls = await CommandCallsAsync();
        calls["xpending"] = calls.GetValueOrDefault("xpending") - polls; // the polling above is not the coordinator's
        calls.Remove("info");
        calls.Remove("config");
        return calls;
    }

    [Fact]
    public async Task AShardsImagesInOneResultsMessageAreRecordedWithOneDeliveryCheckAndOneOutcomeScript()
    {
        var job = await _farm.SubmitAsync(
            new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7f }, Seeds = { 5 } },
            Enumerable.Range(0, 2 * ShardSize).Select(i => new PromptItem { Prompt = $"batched {i}" }));
        Assert.Equal(2u, job.ShardCount);
        using var channel = GrpcChannel.ForAddress(_farm.CoordinatorUrl);
        using var worker = await ConnectAsync(channel, "batcher");
        var (first, firstShard) = await _farm.DeliverFirstAsync("batcher");
        var (second, secondShard) = await _farm.DeliverFirstAsync("batcher");

        // The first shard as older workers send it: one message per image.
        var oneByOne = await CostOfAsync(worker.RequestStream, first, firstShard.Images.Select(i => new WorkerMessage
        {
            Image = new ShardImage { Shard = first, Index = i.Index, Png = ByteString.CopyFrom(Png(64, 64, (byte)i.Index)), RenderSeconds = 0.01 },
        }));
        // The second as one batch, with an image of the wrong size and a second copy of one image among them.
        var images = secondShard.Images.Select(i => new ShardImage { Index = i.Index, Png = ByteString.CopyFrom(Png(64, 64, (byte)i.Index)), RenderSeconds = 0.01 }).ToList();
        var duplicate = new ShardImage(images[2]) { Png = ByteString.CopyFrom(Png(64, 64, 200)) };
        var wrongSize = new ShardImage(images[0]) { Png = ByteString.CopyFrom(Png(32, 32, 1)) };
        var batched = await CostOfAsync(worker.RequestStream, second,
            [new WorkerMessage { Results = new ShardResults { Shard = second, Images = { wrongSize, images, duplicate } } }]);

        // Per image: a delivery check (XPENDING), an admission script, an outcome script and a wake-up of watchers
        // (PUBLISH); per batch one of each. Commands a script runs count too: the acknowledgement's script reads the
        // pending list once.
        long Scripts(Dictionary<string, long> calls) => calls.GetValueOrDefault("evalsha") + calls.GetValueOrDefault("eval");
        Assert.Equal((ShardSize + 1L, 2L * ShardSize + 1, (long)ShardSize), (oneByOne["xpending"], Scripts(oneByOne), oneByOne.GetValueOrDefault("publish")));
        Assert.Equal((2L, 3L, 1L), (batched["xpending"], Scripts(batched), batched.GetValueOrDefault("publish")));

        var status = await _farm.Jobs.GetJobAsync(new GetJobRequest { JobId = job.JobId });
        Assert.Equal((JobState.Completed, (uint)(2 * ShardSize), 0u, 2u), (status.State, status.ImagesDone, status.ImagesFailed, status.ShardsDone));
        var events = await _farm.WatchToEndAsync(job.JobId, TimeSpan.FromSeconds(30));
        var done = events.Where(e => e.ImageDone is not null).Select(e => e.ImageDone).ToList();
        Assert.Equal(firstShard.Images.Concat(secondShard.Images).Select(i => i.Index), done.Select(d => d.Index));
        Assert.Equal(Enumerable.Range(1, 2 * ShardSize).Select(n => (uint)n), done.Select(d => d.ImagesDone));
        // First result wins: the stored image is the batch's first copy, not the duplicate after it.
        var stored = await File.ReadAllBytesAsync(Path.Combine(_farm.StorageDirectory, job.JobId, $"{images[2].Index:D6}.png"));
        Assert.Equal(images[2].Png.ToByteArray(), stored);
    }
}
