using Google.Protobuf;
using Microsoft.Extensions.Options;
using RenderFarm.Coordinator;
using RenderFarm.Coordinator.Previews;
using RenderFarm.FarmState;
using RenderFarm.FarmState.Jobs;
using RenderFarm.Protocol;
using RenderFarm.TestSupport;
using StackExchange.Redis;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// The coordinator's bound on a job's live previews (<c>Farm:PreviewBytesPerJob</c>), on a real Redis: a preview that
/// would take the job past it is refused, a replacement counts only its own bytes, and a finished image frees its share.
/// </summary>
public sealed class PreviewBoundTests
{
    private static ImagePreview Preview(uint index, int bytes) => new() { Index = index, Width = 8, Height = 8, Png = ByteString.CopyFrom(new byte[bytes]) };

    [Fact]
    public async Task PreviewsPastTheJobsBytesBoundAreRefusedAndAFinishedImageFreesItsShare()
    {
        await using var server = await RedisServer.StartAsync();
        using var redis = await ConnectionMultiplexer.ConnectAsync(server.ConnectionString);
        const string job = "bound-job";
        await redis.GetDatabase().HashSetAsync(FarmKeys.JobMeta(job), JobFields.State, JobStates.Running);
        var one = Preview(1, 1000).CalculateSize(); // images 1–4: each encodes to the same size (index 0 would not be written)
        var store = new PreviewStore(redis, Options.Create(new CoordinatorOptions { PreviewBytesPerJob = 3 * one }));

        Assert.True(await store.StoreAsync(job, Preview(1, 1000)));
        Assert.True(await store.StoreAsync(job, Preview(2, 1000)));
        Assert.True(await store.StoreAsync(job, Preview(3, 1000)));
        Assert.False(await store.StoreAsync(job, Preview(4, 1000))); // a fourth image's would pass the bound
        Assert.Equal(3 * one, await store.BytesAsync(job));
        Assert.True(await store.StoreAsync(job, Preview(1, 1000))); // its own replacement fits
        Assert.False(await store.StoreAsync(job, Preview(1, 1100))); // a larger one does not
        Assert.Equal(3 * one, await store.BytesAsync(job));

        await store.DropAsync(job, 1); // image 1 has its outcome
        Assert.Equal(2 * one, await store.BytesAsync(job));
        Assert.True(await store.StoreAsync(job, Preview(4, 1000)));
        Assert.Equal(3 * one, await store.BytesAsync(job));
    }

    [Fact]
    public async Task AWatcherStillGetsPreviewsAfterTheJobsPreviewKeysExpiredAndTheirNumberingStartedAgain()
    {
        await using var server = await RedisServer.StartAsync();
        using var redis = await ConnectionMultiplexer.ConnectAsync(server.ConnectionString);
        const string job = "paused-job";
        await redis.GetDatabase().HashSetAsync(FarmKeys.JobMeta(job), JobFields.State, JobStates.Running);
        var store = new PreviewStore(redis, Options.Create(new CoordinatorOptions()));
        var sent = new Dictionary<uint, long>();
        for (var step = 0; step < 5; step++) Assert.True(await store.StoreAsync(job, Preview(1, 100 + step)));
        Assert.Single(await store.NewerAsync(job, sent)); // the watcher has sent preview 5

        // Paused past the previews' time to live: their keys expire, as here, and the next store numbers from 1.
        await redis.GetDatabase().KeyDeleteAsync([FarmKeys.JobPreviews(job), FarmKeys.JobPreviewSequence(job)]);
        Assert.True(await store.StoreAsync(job, Preview(1, 42)));

        var after = Assert.Single(await store.NewerAsync(job, sent));
        Assert.Equal(42, after.Png.Length);
    }
}
