using System.Security.Cryptography;
using Grpc.Core;
using RenderFarm.Coordinator.Storage;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests.Storage;

/// <summary>A whole farm (real Redis, gRPC, a tiny-model worker) with <c>Farm:Storage=s3://…</c> on s3rver.</summary>
public sealed class S3FarmTests
{
    private const string Bucket = "farm-results";
    private const string Prefix = "renders/test";

    [S3Fact]
    public async Task AJobsImagesLandInTheBucketAndDownloadResultsReturnsThemAsBytesOrUrls()
    {
        await using var s3 = await S3TestServer.StartAsync("s3rver");
        using (var admin = new S3ResultStore(new S3Location(Bucket, Prefix), s3.Options()))
            await admin.CreateBucketAsync(CancellationToken.None);
        await using var farm = await FarmCluster.StartAsync(workers: 1, shardSize: 2, configure: s => s3.Configure(s, Bucket, Prefix));

        var header = new JobHeader
        {
            Params = new GenerationParams { Width = 64, Height = 64, Steps = 3, GuidanceScale = 7.5f, Scheduler = "euler" },
        };
        header.Seeds.AddRange([1, 2]);
        var submitted = await farm.SubmitAsync(header, [new PromptItem { Prompt = "a lighthouse" }, new PromptItem { Prompt = "a red fox" }]);
        var events = await farm.WatchToEndAsync(submitted.JobId, TimeSpan.FromMinutes(2));
        Assert.Equal(JobState.Completed, events[^1].JobFinished.State);
        Assert.False(Directory.Exists(farm.StorageDirectory), "nothing goes to the default directory");

        // Bytes through the coordinator, as farm pull gets them.
        var images = await farm.Jobs.DownloadAllAsync(submitted.JobId);
        Assert.Equal(4, images.Count);
        Assert.All(images, i => Assert.Equal(i.Info.Sha256, i.Sha256));
        Assert.All(images, i => Assert.Equal(i.Png.Length, (int)i.Info.SizeBytes));

        // The objects are in the bucket under PREFIX/JOB/INDEX.png with the sha256 the job recorded.
        using var reader = new S3ResultStore(new S3Location(Bucket, Prefix), s3.Options());
        foreach (var image in images)
        {
            await using var stream = await reader.OpenReadAsync(submitted.JobId, image.Info.Index, CancellationToken.None);
            Assert.NotNull(stream);
            Assert.Equal(image.Sha256, Convert.ToHexStringLower(await SHA256.HashDataAsync(stream)));
        }

        // Presigned URLs: one chunk per image with a URL and no bytes; a plain GET fetches the same PNG.
        using var call = farm.Jobs.DownloadResults(new DownloadResultsRequest { JobId = submitted.JobId, PresignedUrls = true });
        var chunks = await call.ResponseStream.ReadAllAsync().ToListAsync();
        Assert.Equal(4, chunks.Count);
        using var http = new HttpClient();
        foreach (var chunk in chunks)
        {
            Assert.True(chunk.Data.IsEmpty);
            Assert.StartsWith($"{s3.Endpoint}/{Bucket}/{Prefix}/{submitted.JobId}/", chunk.Image.Url);
            var png = await http.GetByteArrayAsync(chunk.Image.Url);
            var expected = images.Single(i => i.Info.Index == chunk.Image.Index);
            Assert.Equal(expected.Png, png);
            Assert.Equal(expected.Info.Sha256, chunk.Image.Sha256);
            Assert.Equal((ulong)png.Length, chunk.Image.SizeBytes);
        }

        // Skip indices still apply.
        using var partial = farm.Jobs.DownloadResults(new DownloadResultsRequest { JobId = submitted.JobId, PresignedUrls = true, SkipIndices = { 0, 1 } });
        Assert.Equal([2u, 3u], (await partial.ResponseStream.ReadAllAsync().ToListAsync()).Select(c => c.Image.Index).Order());
    }
}
