using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using RenderFarm.Coordinator.Diagnostics;
using RenderFarm.Coordinator.Security;
using RenderFarm.Diffusion.Imaging;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;
using StackExchange.Redis;
using RenderFarm.FarmState;
using RenderFarm.FarmState.TaskStreams;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// A worker key can write only what its worker holds. A hostile worker — a real worker key on a real coordinator, and
/// Redis deliveries made the way workers make them — sends reports about shards it does not hold, images of other
/// shards, stale deliveries, results that are not the shard's PNG and progress that does not add up: each is discarded,
/// counted, and changes nothing about the job.
/// </summary>
public sealed class WorkerAuthorityTests : IAsyncLifetime
{
    private FarmCluster _farm = null!;
    private Metadata _alice = null!, _worker = null!;
    private readonly ConcurrentDictionary<string, int> _rejected = new();
    private MeterListener _listener = null!;

    public async Task InitializeAsync()
    {
        _farm = await FarmCluster.StartAsync(workers: 0, shardSize: 2, configure: s => s["Farm:Auth:Mode"] = "ApiKeys");
        var keys = new ApiKeyStore(_farm.Multiplexer);
        _alice = Key((await keys.CreateAsync("alice-corp", ApiKeyRole.Client, "alice")).Secret);
        _worker = Key((await keys.CreateAsync("farm", ApiKeyRole.Worker, "hostile")).Secret);
        var meters = _farm.CoordinatorServices.GetRequiredService<IMeterFactory>();
        _listener = new MeterListener
        {
            InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Scope == meters && instrument.Name == CoordinatorMetrics.RejectedReportsName) listener.EnableMeasurementEvents(instrument);
            },
        };
        _listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            foreach (var tag in tags)
                if (tag.Key == "reason") _rejected.AddOrUpdate((string)tag.Value!, (int)value, (_, n) => n + (int)value);
        });
        _listener.Start();
    }

    public async Task DisposeAsync()
    {
        _listener.Dispose();
        await _farm.DisposeAsync();
    }

    private static Metadata Key(string secret) => new() { { ApiKeyInterceptor.Header, secret } };

    private static byte[] Png(int width, int height) => PngEncoder.Encode(new byte[width * height * 3], width, height);

    /// <summary>A worker's stream, opened by hand: whatever it sends, the coordinator sees from a real worker key.</summary>
    private async Task<AsyncDuplexStreamingCall<WorkerMessage, CoordinatorMessage>> ConnectAsync(GrpcChannel channel, string workerId)
    {
        var call = new WorkerService.WorkerServiceClient(channel).Connect(_worker);
        await call.RequestStream.WriteAsync(new WorkerMessage { Hello = new WorkerHello { WorkerId = workerId, Models = { FarmCluster.Model }, MaxBatch = 2 } });
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        Assert.NotNull(call.ResponseStream.Current.Welcome);
        return call;
    }

    /// <summary>The same entry at another delivery count.</summary>
    private static ShardRef At(ShardRef shard, uint delivery) => new(shard) { Delivery = delivery };

    private static WorkerMessage Image(ShardRef shard, uint index, byte[] png) =>
        new() { Image = new ShardImage { Shard = shard, Index = index, Png = ByteString.CopyFrom(png) } };

    [Fact]
    public async Task ReportsFromAWorkerThatDoesNotHoldTheDeliveryOrAboutAnotherShardAreDiscardedCountedAndChangeNothing()
    {
        var job = await _farm.SubmitAsync(
            new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7f }, Seeds = { 3 } },
            Enumerable.Range(0, 4).Select(i => new PromptItem { Prompt = $"alice's secret {i}" }), headers: _alice);
        Assert.Equal(2u, job.ShardCount);
        using var channel = GrpcChannel.ForAddress(_farm.CoordinatorUrl);
        using var hostile = await ConnectAsync(channel, "hostile");
        var (theirs, theirShard) = await _farm.DeliverFirstAsync("honest"); // held by another worker
        var (mine, myShard) = await _farm.DeliverFirstAsync("hostile");     // held by the hostile worker, delivery 1
        var theirIndex = theirShard.Images[0].Index;
        var myIndex = myShard.Images[0].Index;
        var good = Png(64, 64);

        WorkerMessage[] forged =
        [
            // Shards it does not hold: images (this one completed another tenant's job before), progress, a
            // redelivery past the attempt limit (this one dead-lettered a job no one took), a failure.
            new() { ShardBegin = new ShardBegin { Shard = theirs, ImageCount = 2 } },
            new() { ShardStep = new ShardStep { Shard = theirs, Step = 1, TotalSteps = 2, ItPerSec = 3 } },
            Image(theirs, theirIndex, good),
            new() { ShardRedelivered = new ShardRedelivered { Shard = At(theirs, 4), Delivery = 4, LostBy = "honest" } },
            new() { ShardEnd = new ShardEnd { Shard = theirs, Error = "forged", FailureKind = FailureKind.Bug } },
            // Its own delivery, but an image of the other shard, or a delivery it does not hold any more.
            Image(mine, theirIndex, good),
            Image(At(mine, 2), myIndex, good),
            new() { ShardRedelivered = new ShardRedelivered { Shard = At(mine, 5), Delivery = 5, LostBy = "honest" } },
            // Its own image, but not the shard's PNG: another size, truncated, not a PNG, far too large.
            Image(mine, myIndex, Png(32, 32)),
            Image(mine, myIndex, good[..(good.Length / 2)]),
            Image(mine, myIndex, "GIF89a not a png at all"u8.ToArray()),
            Image(mine, myIndex, [.. good, .. new byte[2 << 20]]),
            // Progress that does not add up.
            new() { ShardStep = new ShardStep { Shard = mine, Step = 5, TotalSteps = 2, ItPerSec = 3 } },
            new() { ShardStep = new ShardStep { Shard = mine, Step = 1, TotalSteps = 2, ItPerSec = float.NaN } },
            new() { ShardStep = new ShardStep { Shard = mine, Step = 1, TotalSteps = 1000, ItPerSec = 3 } },
            // A cancel of a job that is not cancelled would acknowledge the shard: it would never render.
            new() { ShardEnd = new ShardEnd { Shard = mine, Cancelled = true } },
        ];
        foreach (var message in forged) await hostile.RequestStream.WriteAsync(message);
        // Then one report that holds up: once it is applied, every report before it has been (one stream, in order).
        await hostile.RequestStream.WriteAsync(Image(mine, myIndex, good));
        var events = await WaitForEventAsync(job.JobId, e => e.ImageDone is not null);

        var done = Assert.Single(events, e => e.ImageDone is not null).ImageDone;
        Assert.Equal((myIndex, "hostile"), (done.Index, done.WorkerId));
        Assert.DoesNotContain(events, e => e.ImageFailed is not null || e.AttemptFailed is not null || e.ShardStarted is not null || e.Step is not null);
        var status = await _farm.Jobs.GetJobAsync(new GetJobRequest { JobId = job.JobId }, _alice);
        Assert.Equal((JobState.Queued, 1u, 0u), (status.State, status.ImagesDone, status.ImagesFailed));
        Assert.Equal([myIndex], (await _farm.Redis.HashKeysAsync(FarmKeys.JobResults(job.JobId))).Select(k => (uint)k));
        // Both deliveries are still pending with their holders: nothing acknowledged, released or dead-lettered.
        foreach (var (shard, holder) in new[] { (theirs, "honest"), (mine, "hostile") })
        {
            var pending = await _farm.Redis.StreamPendingMessagesAsync(shard.Stream, FarmKeys.WorkerGroup, 1, RedisValue.Null, shard.EntryId, shard.EntryId);
            Assert.Equal((holder, 1L), ((string)Assert.Single(pending).ConsumerName!, pending[0].DeliveryCount));
        }
        Assert.Equal(forged.Length, _rejected.Values.Sum());
        Assert.Equal(5, _rejected["not_holder"]);
        Assert.Equal(2, _rejected["stale_delivery"]);
        Assert.Equal((1, 4, 3, 1), (_rejected["foreign_image"], _rejected["bad_result"], _rejected["bad_progress"], _rejected["not_cancelled"]));
    }

    [Fact]
    public async Task InOneResultsMessageEachImageIsCheckedOnItsOwnAndOnlyTheShardsGoodPngsAreStored()
    {
        var job = await _farm.SubmitAsync(
            new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7f }, Seeds = { 3 } },
            Enumerable.Range(0, 4).Select(i => new PromptItem { Prompt = $"batch {i}" }), headers: _alice);
        using var channel = GrpcChannel.ForAddress(_farm.CoordinatorUrl);
        using var worker = await ConnectAsync(channel, "hostile");
        var (mine, myShard) = await _farm.DeliverFirstAsync("hostile");
        var (_, theirShard) = await _farm.DeliverFirstAsync("honest");
        var (first, second) = (myShard.Images[0].Index, myShard.Images[1].Index);
        var good = Png(64, 64);
        // The coordinator checks a batch's PNGs side by side: each verdict must stay with its own image. A truncated PNG,
        // the shard's good one, another shard's image, and the first index again as a PNG of another size.
        var results = new ShardResults { Shard = mine };
        results.Images.Add(new ShardImage { Index = first, Png = ByteString.CopyFrom(good[..(good.Length - 20)]) });
        results.Images.Add(new ShardImage { Index = second, Png = ByteString.CopyFrom(good) });
        results.Images.Add(new ShardImage { Index = theirShard.Images[0].Index, Png = ByteString.CopyFrom(good) });
        results.Images.Add(new ShardImage { Index = first, Png = ByteString.CopyFrom(Png(32, 32)) });
        await worker.RequestStream.WriteAsync(new WorkerMessage { Results = results });

        var done = Assert.Single(await WaitForEventAsync(job.JobId, e => e.ImageDone is not null), e => e.ImageDone is not null).ImageDone;
        Assert.Equal(second, done.Index);
        Assert.Equal([second], (await _farm.Redis.HashKeysAsync(FarmKeys.JobResults(job.JobId))).Select(k => (uint)k));
        Assert.Equal((2, 1), (_rejected["bad_result"], _rejected["foreign_image"]));
    }

    [Fact]
    public async Task AWorkerIdBelongsToTheKeyThatRegisteredItAndCannotBeTakenOverWithAnother()
    {
        using var channel = GrpcChannel.ForAddress(_farm.CoordinatorUrl);
        using (await ConnectAsync(channel, "gpu-7")) { }
        var other = Key((await new ApiKeyStore(_farm.Multiplexer).CreateAsync("farm", ApiKeyRole.Worker, "other")).Secret);

        using var impostor = new WorkerService.WorkerServiceClient(channel).Connect(other);
        await impostor.RequestStream.WriteAsync(new WorkerMessage { Hello = new WorkerHello { WorkerId = "gpu-7", Models = { FarmCluster.Model } } });
        var error = await Assert.ThrowsAsync<RpcException>(() => impostor.ResponseStream.MoveNext(CancellationToken.None));

        Assert.Equal(StatusCode.PermissionDenied, error.StatusCode);
        Assert.Contains("registered to another worker key", error.Status.Detail);
    }

    [Theory]
    [InlineData(FarmKeys.ReleasedConsumer)] // would take every handed-back shard for its own
    [InlineData("gpu-7~prefetched")]        // would pass for gpu-7's pull-ahead
    public async Task AWorkerIdThatCouldPassForOneOfTheFarmsOwnConsumersIsRefused(string workerId)
    {
        using var channel = GrpcChannel.ForAddress(_farm.CoordinatorUrl);
        using var call = new WorkerService.WorkerServiceClient(channel).Connect(_worker);
        await call.RequestStream.WriteAsync(new WorkerMessage { Hello = new WorkerHello { WorkerId = workerId, Models = { FarmCluster.Model } } });
        var error = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30)));

        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
        Assert.Contains("farm's own consumer names", error.Status.Detail);
        Assert.False(await _farm.Redis.HashExistsAsync(FarmKeys.WorkerRegistry, workerId));
        Assert.False(await _farm.Redis.HashExistsAsync(FarmKeys.WorkerIdOwners, workerId));
    }

    private async Task<List<JobEvent>> WaitForEventAsync(string jobId, Func<JobEvent, bool> wanted)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var watch = _farm.Jobs.WatchJob(new WatchJobRequest { JobId = jobId }, _alice, cancellationToken: cts.Token);
        var events = new List<JobEvent>();
        while (await watch.ResponseStream.MoveNext(cts.Token))
        {
            events.Add(watch.ResponseStream.Current);
            if (wanted(watch.ResponseStream.Current)) return events;
        }
        return events;
    }
}
