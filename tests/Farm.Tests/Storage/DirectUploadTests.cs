using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Net;
using System.Security.Cryptography;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using RenderFarm.Coordinator.Diagnostics;
using RenderFarm.Coordinator.Storage;
using RenderFarm.Diffusion.Imaging;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.FarmState;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests.Storage;

/// <summary>
/// <c>Farm:S3:DirectUploads</c>: workers PUT their PNGs straight into the bucket through URLs the coordinator signs for
/// each image's sha256 and size; the coordinator records them without the bytes passing through it. A real farm on a
/// real S3-compatible server (s3rver; moto too where installed), and a hostile worker by hand. The coordinator takes
/// direct uploads only with conditional writes, so it runs with them on both: moto refuses a second PUT (412), s3rver
/// ignores If-None-Match, and what depends on the refusal is asserted on moto (<see cref="S3TestServer.ConditionalWrites"/>).
/// Neither server checks signatures or checksums (S3 does): what is tested here is what the coordinator signs and
/// grants, and what it checks itself.
/// </summary>
public sealed class DirectUploadTests
{
    private const string Bucket = "farm-direct";
    private const string Prefix = "renders";

    public static TheoryData<string> Servers() => new(S3TestServer.AvailableKinds());

    private static void DirectUploads(S3TestServer s3, Dictionary<string, string?> settings)
    {
        s3.Configure(settings, Bucket, Prefix);
        settings["Farm:S3:DirectUploads"] = "true";
        settings["Farm:S3:ConditionalWrites"] = "true"; // which direct uploads need; s3rver ignores the header
    }

    private static async Task<S3ResultStore> BucketAsync(S3TestServer s3)
    {
        var store = new S3ResultStore(new S3Location(Bucket, Prefix), s3.Options());
        await store.CreateBucketAsync(CancellationToken.None);
        return store;
    }

    /// <summary>Counts the coordinator's measurements of one instrument, by the value of one tag (or "" for all).</summary>
    private static MeterListener Count(FarmCluster farm, string instrumentName, string tag, ConcurrentDictionary<string, int> counts)
    {
        var meters = farm.CoordinatorServices.GetRequiredService<IMeterFactory>();
        var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Scope == meters && instrument.Name == instrumentName) l.EnableMeasurementEvents(instrument);
            },
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            var key = "";
            foreach (var t in tags) if (t.Key == tag) key = (string)t.Value!;
            counts.AddOrUpdate(key, (int)value, (_, n) => n + (int)value);
        });
        listener.Start();
        return listener;
    }

    [S3Theory, MemberData(nameof(Servers))]
    public async Task AWorkersResultsGoStraightIntoTheBucketAndTheJobRecordsTheirSha256(string kind)
    {
        await using var s3 = await S3TestServer.StartAsync(kind);
        using var reader = await BucketAsync(s3);
        await using var farm = await FarmCluster.StartAsync(workers: 1, shardSize: 2, configure: s => DirectUploads(s3, s));
        var uploaded = new ConcurrentDictionary<string, int>();
        using var listener = Count(farm, CoordinatorMetrics.ResultsUploadedName, "", uploaded);

        var header = new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7.5f, Scheduler = "euler" } };
        header.Seeds.AddRange([1, 2]);
        var submitted = await farm.SubmitAsync(header, [new PromptItem { Prompt = "a lighthouse" }, new PromptItem { Prompt = "a red fox" }]);
        var events = await farm.WatchToEndAsync(submitted.JobId, TimeSpan.FromMinutes(2));
        Assert.Equal(JobState.Completed, events[^1].JobFinished.State);

        // Every image came as an upload (none through the coordinator), and is in the bucket with the sha256 recorded.
        Assert.Equal(4, uploaded.GetValueOrDefault(""));
        var images = await farm.Jobs.DownloadAllAsync(submitted.JobId);
        Assert.Equal(4, images.Count);
        foreach (var image in images)
        {
            Assert.Equal(image.Info.Sha256, image.Sha256);
            Assert.Equal(new StoredObject(image.Sha256, image.Png.Length), await reader.FindAsync(submitted.JobId, image.Info.Index, CancellationToken.None));
            Assert.Null(PngProblem(image.Png));
        }
    }

    private static string? PngProblem(byte[] png) => RenderFarm.Imaging.ImageHeader.IsPng(png) ? null : "not a PNG";

    [S3Theory, MemberData(nameof(Servers))]
    public async Task AnUploadUrlIsSignedForExactlyTheGrantedBytesAndFirstResultWinsWhereTheServerCanRefuse(string kind)
    {
        await using var s3 = await S3TestServer.StartAsync(kind);
        using var store = await BucketAsync(s3);
        var png = PngEncoder.Encode(new byte[16 * 16 * 3], 16, 16);
        var sha = SHA256.HashData(png);

        var target = store.PresignUpload("job1", 3, sha, png.Length, TimeSpan.FromMinutes(5));
        var query = System.Web.HttpUtility.ParseQueryString(new Uri(target.Url).Query);
        var signed = query["X-Amz-SignedHeaders"]!.Split(';');
        string[] expected = ["content-length", "content-type", "host", "x-amz-checksum-sha256", "x-amz-meta-sha256", .. s3.ConditionalWrites ? ["if-none-match"] : Array.Empty<string>()];
        Assert.Equal(expected.Order(), signed.Order());
        Assert.InRange(int.Parse(query["X-Amz-Expires"]!), 295, 301); // the SDK counts from its own clock, rounding up
        Assert.Equal(Convert.ToBase64String(sha), target.Headers.Single(h => h.Name == "x-amz-checksum-sha256").Value);
        Assert.StartsWith($"{s3.Endpoint}/{Bucket}/{Prefix}/job1/000003.png?", target.Url);

        // The PUT a worker makes with the grant's headers stores the image, and the store finds it by its metadata.
        using var http = new HttpClient();
        Assert.Equal(HttpStatusCode.OK, (await PutAsync(http, target, png)).StatusCode);
        Assert.Equal(new StoredObject(Convert.ToHexStringLower(sha), png.Length), await store.FindAsync("job1", 3, CancellationToken.None));
        if (s3.ConditionalWrites)
            Assert.Equal(HttpStatusCode.PreconditionFailed, (await PutAsync(http, target, png)).StatusCode);

        await store.DeleteAsync("job1", 3, CancellationToken.None);
        Assert.Null(await store.FindAsync("job1", 3, CancellationToken.None));
        await store.DeleteAsync("job1", 3, CancellationToken.None); // nothing there: no error
    }

    private static Task<HttpResponseMessage> PutAsync(HttpClient http, UploadTarget target, byte[] body)
    {
        var content = new ByteArrayContent(body);
        var request = new HttpRequestMessage(HttpMethod.Put, target.Url) { Content = content };
        foreach (var h in target.Headers)
            if (!request.Headers.TryAddWithoutValidation(h.Name, h.Value)) content.Headers.TryAddWithoutValidation(h.Name, h.Value);
        return http.SendAsync(request);
    }

    [S3Fact]
    public async Task AHostileWorkerGetsNoGrantForWhatItDoesNotHoldAndAnUploadThatIsNotWhatWasGrantedIsRefusedAndDeleted()
    {
        await using var s3 = await S3TestServer.StartAsync("s3rver");
        using var store = await BucketAsync(s3);
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 2, configure: s => DirectUploads(s3, s));
        var rejected = new ConcurrentDictionary<string, int>();
        using var listener = Count(farm, CoordinatorMetrics.RejectedReportsName, "reason", rejected);
        var job = await farm.SubmitAsync(
            new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7f }, Seeds = { 3 } },
            Enumerable.Range(0, 4).Select(i => new PromptItem { Prompt = $"upload {i}" }));
        using var channel = GrpcChannel.ForAddress(farm.CoordinatorUrl);
        var (call, welcome) = await FarmCluster.ConnectWorkerAsync(channel, "hostile");
        using var _ = call;
        Assert.True(welcome.DirectUploads);

        var (theirs, theirShard) = await farm.DeliverFirstAsync("honest");
        var (mine, myShard) = await farm.DeliverFirstAsync("hostile");
        var (first, second) = (myShard.Images[0].Index, myShard.Images[1].Index);
        var good = PngEncoder.Encode(new byte[64 * 64 * 3], 64, 64);
        ResultDigest Digest(uint index, byte[] bytes) => new() { Index = index, Sha256 = ByteString.CopyFrom(SHA256.HashData(bytes)), SizeBytes = (ulong)bytes.Length };
        ulong next = 0;
        async Task<UploadGrant> AskAsync(ShardRef shard, params ResultDigest[] images)
        {
            var request = new UploadRequest { RequestId = ++next, Shard = shard };
            request.Images.AddRange(images);
            await call.RequestStream.WriteAsync(new WorkerMessage { UploadRequest = request });
            Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
            Assert.Equal(next, call.ResponseStream.Current.UploadGrant.RequestId);
            return call.ResponseStream.Current.UploadGrant;
        }

        // No grant for a shard it does not hold, for another shard's image, or for what no 64x64 PNG can be.
        Assert.Empty((await AskAsync(theirs, Digest(theirShard.Images[0].Index, good))).Targets);
        Assert.Empty((await AskAsync(mine, Digest(theirShard.Images[0].Index, good),
            new ResultDigest { Index = first, Sha256 = ByteString.CopyFrom(new byte[5]), SizeBytes = 100 },
            new ResultDigest(Digest(first, good)) { SizeBytes = 64UL << 20 })).Targets);
        Assert.Equal((1, 1, 2), (rejected["not_holder"], rejected["foreign_image"], rejected["bad_upload"]));

        // Granted for one PNG, it uploads other bytes (s3rver does not check the signed checksum; S3 would refuse
        // them): the coordinator fetches it back (a connection's first results are all checked), refuses it, deletes it.
        using var http = new HttpClient();
        var target = Assert.Single((await AskAsync(mine, Digest(first, good))).Targets);
        Assert.Equal(first, target.Index);
        var gif = "GIF89a not a png at all"u8.ToArray();
        await PutAsync(http, target, gif);
        // And it reports an upload it was never granted, for its second image.
        var results = new ShardResults { Shard = mine };
        results.Images.Add(new ShardImage { Index = first, Uploaded = Digest(first, good) });
        results.Images.Add(new ShardImage { Index = second, Uploaded = Digest(second, good) });
        await call.RequestStream.WriteAsync(new WorkerMessage { Results = results });

        // Then an honest upload of its second image: once it is recorded, the reports before it have been handled.
        var honest = Assert.Single((await AskAsync(mine, Digest(second, good))).Targets);
        Assert.Equal(HttpStatusCode.OK, (await PutAsync(http, honest, good)).StatusCode);
        await call.RequestStream.WriteAsync(new WorkerMessage { Results = new ShardResults { Shard = mine, Images = { new ShardImage { Index = second, Uploaded = Digest(second, good) } } } });
        await Eventually.HoldsAsync(async () => await farm.Redis.HashLengthAsync(FarmKeys.JobResults(job.JobId)) == 1, "the honest upload to be recorded");

        Assert.Equal([second], (await farm.Redis.HashKeysAsync(FarmKeys.JobResults(job.JobId))).Select(k => (uint)k));
        Assert.Equal(2, rejected["bad_result"]);
        Assert.Null(await store.FindAsync(job.JobId, first, CancellationToken.None));
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(good)), (await store.FindAsync(job.JobId, second, CancellationToken.None))!.Sha256);
        // A grant is used once: the same report again is refused.
        await call.RequestStream.WriteAsync(new WorkerMessage { Results = new ShardResults { Shard = mine, Images = { new ShardImage { Index = second, Uploaded = Digest(second, good) } } } });
        await Eventually.HoldsAsync(() => Task.FromResult(rejected.GetValueOrDefault("bad_result") == 3), "the replayed report to be refused");
        await call.RequestStream.CompleteAsync();
    }

    [S3Theory, MemberData(nameof(Servers))]
    public async Task AnUploadThatFindsTheImageStoredRecordsWhatIsStoredWhereTheServerRefusesASecondWrite(string kind)
    {
        await using var s3 = await S3TestServer.StartAsync(kind);
        using var store = await BucketAsync(s3);
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 2, configure: s => DirectUploads(s3, s));
        var job = await farm.SubmitAsync(
            new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7f }, Seeds = { 5 } },
            Enumerable.Range(0, 2).Select(i => new PromptItem { Prompt = $"twice {i}" }));
        using var channel = GrpcChannel.ForAddress(farm.CoordinatorUrl);
        var (call, _) = await FarmCluster.ConnectWorkerAsync(channel, "w1");
        using var stream = call;
        var (mine, myShard) = await farm.DeliverFirstAsync("w1");
        var index = myShard.Images[0].Index;
        var firstPng = PngEncoder.Encode(new byte[64 * 64 * 3], 64, 64);
        var secondPng = PngEncoder.Encode(Enumerable.Repeat((byte)200, 64 * 64 * 3).ToArray(), 64, 64);
        ResultDigest Digest(byte[] bytes) => new() { Index = index, Sha256 = ByteString.CopyFrom(SHA256.HashData(bytes)), SizeBytes = (ulong)bytes.Length };
        async Task<UploadTarget> GrantAsync(byte[] png, ulong id)
        {
            await call.RequestStream.WriteAsync(new WorkerMessage { UploadRequest = new UploadRequest { RequestId = id, Shard = mine, Images = { Digest(png) } } });
            Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
            return Assert.Single(call.ResponseStream.Current.UploadGrant.Targets);
        }

        // One upload lands but is never reported (its worker died); the next delivery's render differs by a bit.
        using var http = new HttpClient();
        Assert.Equal(HttpStatusCode.OK, (await PutAsync(http, await GrantAsync(firstPng, 1), firstPng)).StatusCode);
        var second = await PutAsync(http, await GrantAsync(secondPng, 2), secondPng);
        if (s3.ConditionalWrites)
        {
            // The server keeps the first; the worker says so, and the coordinator records what is stored.
            Assert.Equal(HttpStatusCode.PreconditionFailed, second.StatusCode);
            await call.RequestStream.WriteAsync(new WorkerMessage { Results = new ShardResults { Shard = mine, Images = { new ShardImage { Index = index, Uploaded = new ResultDigest(Digest(secondPng)) { FoundStored = true } } } } });
        }
        else
        {
            // s3rver ignores If-None-Match, so the second write replaces the first: what is reported is what is stored.
            Assert.Equal(HttpStatusCode.OK, second.StatusCode);
            await call.RequestStream.WriteAsync(new WorkerMessage { Results = new ShardResults { Shard = mine, Images = { new ShardImage { Index = index, Uploaded = Digest(secondPng) } } } });
        }
        await Eventually.HoldsAsync(async () => await farm.Redis.HashLengthAsync(FarmKeys.JobResults(job.JobId)) == 1, "the image to be recorded");
        var stored = (await store.FindAsync(job.JobId, index, CancellationToken.None))!;
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(s3.ConditionalWrites ? firstPng : secondPng)), stored.Sha256);
        var images = await farm.Jobs.DownloadAllAsync(job.JobId);
        Assert.Equal(stored.Sha256, Assert.Single(images).Info.Sha256);
        Assert.Equal(stored.Sha256, images[0].Sha256);
        await call.RequestStream.CompleteAsync();
    }

    [S3Theory, MemberData(nameof(Servers))]
    public async Task AnUnreportedUploadThatIsNotAPngIsNeverRecordedEvenWithDecodeSamplingOff(string kind)
    {
        await using var s3 = await S3TestServer.StartAsync(kind);
        using var store = await BucketAsync(s3);
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 2, configure: s =>
        {
            DirectUploads(s3, s);
            (s["Farm:ResultDecodeFirst"], s["Farm:ResultDecodeOneIn"]) = ("0", int.MaxValue.ToString()); // no sampled check
        });
        var job = await farm.SubmitAsync(
            new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7f }, Seeds = { 9 } },
            [new PromptItem { Prompt = "poisoned" }]);
        using var channel = GrpcChannel.ForAddress(farm.CoordinatorUrl);
        var (call, _) = await FarmCluster.ConnectWorkerAsync(channel, "w1");
        using var stream = call;
        var (mine, myShard) = await farm.DeliverFirstAsync("w1");
        var index = myShard.Images[0].Index;
        var gif = "GIF89a not a png at all"u8.ToArray();
        var good = PngEncoder.Encode(new byte[64 * 64 * 3], 64, 64);
        ResultDigest Digest(byte[] bytes) => new() { Index = index, Sha256 = ByteString.CopyFrom(SHA256.HashData(bytes)), SizeBytes = (ulong)bytes.Length };
        ulong next = 0;
        async Task<UploadTarget> GrantAsync(byte[] bytes)
        {
            await call.RequestStream.WriteAsync(new WorkerMessage { UploadRequest = new UploadRequest { RequestId = ++next, Shard = mine, Images = { Digest(bytes) } } });
            Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
            return Assert.Single(call.ResponseStream.Current.UploadGrant.Targets);
        }
        Task ReportAsync(ResultDigest digest) =>
            call.RequestStream.WriteAsync(new WorkerMessage { Results = new ShardResults { Shard = mine, Images = { new ShardImage { Index = index, Uploaded = digest } } } });

        // A delivery uploads bytes that are no PNG (S3 takes them: they are what it was granted) and never reports them.
        using var http = new HttpClient();
        Assert.Equal(HttpStatusCode.OK, (await PutAsync(http, await GrantAsync(gif), gif)).StatusCode);
        var honest = await PutAsync(http, await GrantAsync(good), good);
        if (s3.ConditionalWrites)
        {
            // The next delivery's PUT is refused: the image is stored. Its report says so, and the coordinator checks
            // what is stored, sampled or not: it refuses it and deletes it, and the image can be stored again.
            Assert.Equal(HttpStatusCode.PreconditionFailed, honest.StatusCode);
            await ReportAsync(new ResultDigest(Digest(good)) { FoundStored = true });
            await Eventually.HoldsAsync(async () => await store.FindAsync(job.JobId, index, CancellationToken.None) is null, "the stored non-PNG to be deleted");
            Assert.Equal(0, await farm.Redis.HashLengthAsync(FarmKeys.JobResults(job.JobId)));
            Assert.Equal(HttpStatusCode.OK, (await PutAsync(http, await GrantAsync(good), good)).StatusCode);
        }
        else
        {
            Assert.Equal(HttpStatusCode.OK, honest.StatusCode); // no refusal of a second write: the PNG replaces it
        }
        await ReportAsync(Digest(good));
        await Eventually.HoldsAsync(async () => await farm.Redis.HashLengthAsync(FarmKeys.JobResults(job.JobId)) == 1, "the PNG to be recorded");
        var sha = Convert.ToHexStringLower(SHA256.HashData(good));
        Assert.Equal(sha, (await store.FindAsync(job.JobId, index, CancellationToken.None))!.Sha256);
        Assert.Equal(sha, Assert.Single(await farm.Jobs.DownloadAllAsync(job.JobId)).Info.Sha256);
        await call.RequestStream.CompleteAsync();
    }

    [S3Fact]
    public async Task ACoordinatorRefusesToStartWithDirectUploadsButNoConditionalWritesNamingBothSettings()
    {
        await using var s3 = await S3TestServer.StartAsync("s3rver");
        using var _ = await BucketAsync(s3);
        // Without If-None-Match a stalled worker's upload URL, still valid, could write over a result already recorded.
        var failure = await Assert.ThrowsAsync<Microsoft.Extensions.Options.OptionsValidationException>(() => FarmCluster.StartAsync(workers: 0, configure: s =>
        {
            s3.Configure(s, Bucket, Prefix);
            (s["Farm:S3:DirectUploads"], s["Farm:S3:ConditionalWrites"]) = ("true", "false");
        }));
        Assert.Contains("Farm:S3:DirectUploads needs Farm:S3:ConditionalWrites", failure.Message);
        Assert.Contains("Farm:S3:DirectUploads=false", failure.Message);

        // Either setting alone is a farm that runs: through the coordinator without conditional writes, direct with them.
        await using (var viaCoordinator = await FarmCluster.StartAsync(workers: 0, configure: s => s3.Configure(s, Bucket, Prefix)))
        {
            using var channel = GrpcChannel.ForAddress(viaCoordinator.CoordinatorUrl);
            var (call, welcome) = await FarmCluster.ConnectWorkerAsync(channel, "w1");
            using var stream = call;
            Assert.False(welcome.DirectUploads);
        }
        await using var direct = await FarmCluster.StartAsync(workers: 0, configure: s => DirectUploads(s3, s));
        using (var channel = GrpcChannel.ForAddress(direct.CoordinatorUrl))
        {
            var (call, welcome) = await FarmCluster.ConnectWorkerAsync(channel, "w1");
            using var stream = call;
            Assert.True(welcome.DirectUploads);
        }
    }

    /// <summary>A 64x64 job of <paramref name="count"/> images in one shard, and the farm's count of refused reports by reason.</summary>
    private static async Task<(string JobId, MeterListener Listener)> SubmitAsync(FarmCluster farm, int count, ConcurrentDictionary<string, int> rejected)
    {
        var listener = Count(farm, CoordinatorMetrics.RejectedReportsName, "reason", rejected);
        var job = await farm.SubmitAsync(
            new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7f }, Seeds = { 13 } },
            Enumerable.Range(0, count).Select(i => new PromptItem { Prompt = $"found stored {i}" }));
        return (job.JobId, listener);
    }

    /// <summary>The shard's lease lapsed (its worker stalled) and another worker took it over, as XAUTOCLAIM does: delivery 2.</summary>
    private static async Task<ShardRef> TakeOverAsync(FarmCluster farm, ShardRef shard, string worker)
    {
        Assert.Single(await farm.Redis.StreamClaimAsync(shard.Stream, FarmKeys.WorkerGroup, worker, 0, [shard.EntryId]));
        return new ShardRef(shard) { Delivery = shard.Delivery + 1 };
    }

    private static readonly byte[] GoodPng = PngEncoder.Encode(new byte[64 * 64 * 3], 64, 64);

    /// <summary>A well-formed PNG that no check of a 64x64 shard's result passes: a worker that renders the wrong size.</summary>
    private static readonly byte[] WrongSizePng = PngEncoder.Encode(new byte[32 * 32 * 3], 32, 32);

    [S3Theory, MemberData(nameof(Servers))]
    public async Task AnUploadFoundStoredForAnImageWhoseResultIsRecordedLeavesThatResultAloneAndHoldsNothingAgainstItsWorker(string kind)
    {
        await using var s3 = await S3TestServer.StartAsync(kind);
        using var store = await BucketAsync(s3);
        // No sampled checks: an upload is recorded as granted (S3 held it to its sha256), unchecked, as most are.
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 2, configure: s =>
        {
            DirectUploads(s3, s);
            (s["Farm:ResultDecodeFirst"], s["Farm:ResultDecodeOneIn"]) = ("0", int.MaxValue.ToString());
        });
        var rejected = new ConcurrentDictionary<string, int>();
        var (jobId, listener) = await SubmitAsync(farm, 2, rejected);
        using var _ = listener;
        using var channel = GrpcChannel.ForAddress(farm.CoordinatorUrl);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        var (first, shard) = await farm.DeliverFirstAsync("w1");
        var (index, other) = (shard.Images[0].Index, shard.Images[1].Index);

        // The first delivery's upload of the image is recorded: bytes a full check would refuse, which no sample checked.
        using var w1 = await HandWorker.ConnectAsync(channel, "w1", first);
        Assert.Equal(HttpStatusCode.OK, (await PutAsync(http, await w1.GrantAsync(index, WrongSizePng), WrongSizePng)).StatusCode);
        await w1.ReportAsync(index, WrongSizePng);
        await Eventually.HoldsAsync(async () => await farm.Redis.HashLengthAsync(FarmKeys.JobResults(jobId)) == 1, "the first delivery's result to be recorded");
        var recorded = Convert.ToHexStringLower(SHA256.HashData(WrongSizePng));

        // Its worker stalls, and another takes the shard over. Its upload of the image is refused: the image is stored
        // (moto refuses, as S3 does; s3rver would write over it, so the PUT is left out there), and it says so.
        using var w2 = await HandWorker.ConnectAsync(channel, "w2", await TakeOverAsync(farm, first, "w2"));
        var target = await w2.GrantAsync(index, GoodPng);
        if (s3.ConditionalWrites) Assert.Equal(HttpStatusCode.PreconditionFailed, (await PutAsync(http, target, GoodPng)).StatusCode);
        await w2.ReportAsync(index, GoodPng, foundStored: true);
        // Its other image then: once that is recorded, the report before it has been handled.
        Assert.Equal(HttpStatusCode.OK, (await PutAsync(http, await w2.GrantAsync(other, GoodPng), GoodPng)).StatusCode);
        await w2.ReportAsync(other, GoodPng);
        await Eventually.HoldsAsync(async () => await farm.Redis.HashLengthAsync(FarmKeys.JobResults(jobId)) == 2, "the second delivery's other image to be recorded");

        // The image's result is what the job recorded first: still stored, still what users download with the sha256 on
        // record. The report was moot, and the worker that found the image stored is not held to what another stored.
        Assert.Equal(recorded, (await store.FindAsync(jobId, index, CancellationToken.None))?.Sha256);
        var download = Assert.Single(await farm.Jobs.DownloadAllAsync(jobId), i => i.Info.Index == index);
        Assert.Equal((recorded, recorded), (download.Info.Sha256, download.Sha256));
        Assert.Equal(0, rejected.GetValueOrDefault("bad_result"));
    }

    [S3Theory, MemberData(nameof(Servers))]
    public async Task ABadUploadFoundStoredIsDeletedSoItsImageIsStoredAgainAndHeldOnlyAgainstAWorkerWhoseOwnGrantPutItThere(string kind)
    {
        await using var s3 = await S3TestServer.StartAsync(kind);
        using var store = await BucketAsync(s3);
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 2, configure: s => DirectUploads(s3, s));
        var rejected = new ConcurrentDictionary<string, int>();
        var (jobId, listener) = await SubmitAsync(farm, 2, rejected);
        using var _ = listener;
        using var channel = GrpcChannel.ForAddress(farm.CoordinatorUrl);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        var (first, shard) = await farm.DeliverFirstAsync("w1");
        var (index, other) = (shard.Images[0].Index, shard.Images[1].Index);
        var good = Convert.ToHexStringLower(SHA256.HashData(GoodPng));

        // A first delivery uploads bytes no check passes, and its worker dies before it reports them.
        using var w1 = await HandWorker.ConnectAsync(channel, "w1", first);
        Assert.Equal(HttpStatusCode.OK, (await PutAsync(http, await w1.GrantAsync(index, WrongSizePng), WrongSizePng)).StatusCode);

        // The worker that takes the shard over finds the image stored (refused on moto; s3rver would write over it).
        using var w2 = await HandWorker.ConnectAsync(channel, "w2", await TakeOverAsync(farm, first, "w2"));
        var target = await w2.GrantAsync(index, GoodPng);
        if (s3.ConditionalWrites) Assert.Equal(HttpStatusCode.PreconditionFailed, (await PutAsync(http, target, GoodPng)).StatusCode);
        await w2.ReportAsync(index, GoodPng, foundStored: true);
        // What is stored is checked, refused and deleted, so that the image can be stored again; and it is.
        await Eventually.HoldsAsync(async () => await store.FindAsync(jobId, index, CancellationToken.None) is null, "the unreported bad upload to be deleted");
        Assert.Equal(0, await farm.Redis.HashLengthAsync(FarmKeys.JobResults(jobId)));
        Assert.Equal(HttpStatusCode.OK, (await PutAsync(http, await w2.GrantAsync(index, GoodPng), GoodPng)).StatusCode);
        await w2.ReportAsync(index, GoodPng);
        await Eventually.HoldsAsync(async () => await farm.Redis.HashLengthAsync(FarmKeys.JobResults(jobId)) == 1, "the image to be stored again");
        Assert.Equal(good, (await store.FindAsync(jobId, index, CancellationToken.None))?.Sha256);
        // The bad bytes were another delivery's: nothing is held against the worker that found them.
        Assert.Equal(0, rejected.GetValueOrDefault("bad_result"));

        // The same worker then PUTs bad bytes for its other image through a grant of its own, asks again with a good PNG,
        // and reports that found stored: what is stored is its own doing, so it is refused, deleted and held against it.
        Assert.Equal(HttpStatusCode.OK, (await PutAsync(http, await w2.GrantAsync(other, WrongSizePng), WrongSizePng)).StatusCode);
        target = await w2.GrantAsync(other, GoodPng);
        if (s3.ConditionalWrites) Assert.Equal(HttpStatusCode.PreconditionFailed, (await PutAsync(http, target, GoodPng)).StatusCode);
        await w2.ReportAsync(other, GoodPng, foundStored: true);
        await Eventually.HoldsAsync(() => Task.FromResult(rejected.GetValueOrDefault("bad_result") == 1), "the worker's own bad upload to be refused");
        Assert.Null(await store.FindAsync(jobId, other, CancellationToken.None));
        Assert.Equal(1, await farm.Redis.HashLengthAsync(FarmKeys.JobResults(jobId)));
    }

    [S3Theory, MemberData(nameof(Servers))]
    public async Task APngSentOnTheStreamWhereAnUnreportedUploadIsStoredIsRecordedOnlyAfterThatUploadIsChecked(string kind)
    {
        await using var s3 = await S3TestServer.StartAsync(kind);
        using var store = await BucketAsync(s3);
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 2, configure: s => DirectUploads(s3, s));
        var rejected = new ConcurrentDictionary<string, int>();
        var (jobId, listener) = await SubmitAsync(farm, 2, rejected);
        using var _ = listener;
        using var channel = GrpcChannel.ForAddress(farm.CoordinatorUrl);
        var (first, shard) = await farm.DeliverFirstAsync("w1");
        var (index, other) = (shard.Images[0].Index, shard.Images[1].Index);

        // A delivery that never reported them left an upload under each image: bytes that are no PNG, and another PNG.
        var garbage = "GIF89a not a png at all"u8.ToArray();
        var otherPng = PngEncoder.Encode(Enumerable.Repeat((byte)200, 64 * 64 * 3).ToArray(), 64, 64);
        await store.PutIfAbsentAsync(jobId, index, garbage, CancellationToken.None);
        await store.PutIfAbsentAsync(jobId, other, otherPng, CancellationToken.None);

        // The worker that takes the shard over sends its PNGs on the stream (its uploads failed, or it is an older worker).
        using var w2 = await HandWorker.ConnectAsync(channel, "w2", await TakeOverAsync(farm, first, "w2"));
        await w2.SendAsync(GoodPng, index);
        await w2.SendAsync(GoodPng, other);
        await Eventually.HoldsAsync(async () => await farm.Redis.HashLengthAsync(FarmKeys.JobResults(jobId)) == 2, "both images to be recorded");

        // The bytes that are no PNG were checked before anything was recorded, deleted, and the stream's PNG stored in
        // their place (s3rver, which ignores If-None-Match, wrote over them at once). The other PNG passed its check
        // where the server kept it, and the first result wins. Nothing is held against the worker.
        var good = Convert.ToHexStringLower(SHA256.HashData(GoodPng));
        var kept = Convert.ToHexStringLower(SHA256.HashData(s3.ConditionalWrites ? otherPng : GoodPng));
        Assert.Equal(good, (await store.FindAsync(jobId, index, CancellationToken.None))?.Sha256);
        Assert.Equal(kept, (await store.FindAsync(jobId, other, CancellationToken.None))?.Sha256);
        var images = await farm.Jobs.DownloadAllAsync(jobId);
        Assert.Equal((good, good), images.Where(i => i.Info.Index == index).Select(i => (i.Info.Sha256, i.Sha256)).Single());
        Assert.Equal((kept, kept), images.Where(i => i.Info.Index == other).Select(i => (i.Info.Sha256, i.Sha256)).Single());
        Assert.Equal(0, rejected.GetValueOrDefault("bad_result"));
    }

    [S3Theory, MemberData(nameof(Servers))]
    public async Task ADeliveryLeftOnlyWithImagesDroppedAsAnotherDeliverysBadUploadIsHandedBackAtOnceWithoutUsingAnAttempt(string kind)
    {
        await using var s3 = await S3TestServer.StartAsync(kind);
        using var store = await BucketAsync(s3);
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 2, configure: s =>
        {
            DirectUploads(s3, s);
            s["Farm:MaxAttempts"] = "2";
        });
        var rejected = new ConcurrentDictionary<string, int>();
        var (jobId, listener) = await SubmitAsync(farm, 2, rejected);
        using var _ = listener;
        using var channel = GrpcChannel.ForAddress(farm.CoordinatorUrl);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        var (first, shard) = await farm.DeliverFirstAsync("w1");
        var (index, other) = (shard.Images[0].Index, shard.Images[1].Index);

        // A first delivery uploads bytes no check passes and its worker dies before it reports them.
        using var w1 = await HandWorker.ConnectAsync(channel, "w1", first);
        Assert.Equal(HttpStatusCode.OK, (await PutAsync(http, await w1.GrantAsync(index, WrongSizePng), WrongSizePng)).StatusCode);

        // The worker that takes the shard over, at its last attempt, stores its other image and finds this one stored:
        // the coordinator deletes what it found, and the worker, which no longer has that PNG, ends its delivery well.
        var last = await TakeOverAsync(farm, first, "w2");
        using var w2 = await HandWorker.ConnectAsync(channel, "w2", last);
        Assert.Equal(HttpStatusCode.OK, (await PutAsync(http, await w2.GrantAsync(other, GoodPng), GoodPng)).StatusCode);
        await w2.ReportAsync(other, GoodPng);
        var target = await w2.GrantAsync(index, GoodPng);
        if (s3.ConditionalWrites) Assert.Equal(HttpStatusCode.PreconditionFailed, (await PutAsync(http, target, GoodPng)).StatusCode); // s3rver would write over it
        await w2.ReportAsync(index, GoodPng, foundStored: true);
        await w2.EndAsync();

        // The shard is handed back at once, its attempt given back: not left to lapse as w2's lost lease, which at the
        // last attempt would dead-letter the image for what w1 did.
        async Task<(string Owner, long Deliveries)?> PendingAsync()
        {
            var pending = await farm.Redis.StreamPendingMessagesAsync(last.Stream, FarmKeys.WorkerGroup, 1, StackExchange.Redis.RedisValue.Null, last.EntryId, last.EntryId);
            return pending.Length == 1 ? ((string)pending[0].ConsumerName!, pending[0].DeliveryCount) : null;
        }
        await Eventually.HoldsAsync(async () => await PendingAsync() is (FarmKeys.ReleasedConsumer, _), "the shard to be handed back");
        Assert.Equal((FarmKeys.ReleasedConsumer, last.Delivery - 1), await PendingAsync());
        Assert.Null(await store.FindAsync(jobId, index, CancellationToken.None));
        Assert.Equal(0, rejected.GetValueOrDefault("bad_result"));

        // The next delivery renders the image, and the job completes with no attempt held against w2.
        await farm.StartWorkerAsync("w3");
        var events = await farm.WatchToEndAsync(jobId, TimeSpan.FromMinutes(2));
        Assert.Equal(JobState.Completed, events[^1].JobFinished.State);
        Assert.DoesNotContain(events, e => e.AttemptFailed is { } failed && failed.WorkerId == "w2");
        var images = await farm.Jobs.DownloadAllAsync(jobId);
        Assert.Equal(2, images.Count);
        // (s3rver lets w3's render of the other image write over the one recorded: the reason uploads need conditional writes.)
        Assert.All(images.Where(i => s3.ConditionalWrites || i.Info.Index == index), i => Assert.Equal(i.Info.Sha256, i.Sha256));
    }

    [S3Theory, MemberData(nameof(Servers))]
    public async Task WhileABadUploadIsBeingDeletedNoOtherResultForItsImageIsRecorded(string kind)
    {
        await using var s3 = await S3TestServer.StartAsync(kind);
        using var store = await BucketAsync(s3);
        FirstImageDeletionHeld.Gate gate = null!;
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 2, configure: s => DirectUploads(s3, s),
            coordinatorServices: services => gate = FirstImageDeletionHeld.Install(services));
        var rejected = new ConcurrentDictionary<string, int>();
        var (jobId, listener) = await SubmitAsync(farm, 2, rejected);
        using var _ = listener;
        using var channel = GrpcChannel.ForAddress(farm.CoordinatorUrl);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        var (first, shard) = await farm.DeliverFirstAsync("w1");
        var (index, other) = (shard.Images[0].Index, shard.Images[1].Index);

        // A worker uploads bytes no check passes and reports them; its connection's first results are all checked, so
        // the coordinator fetches them back, refuses them and deletes them. The deletion is held up here.
        using var w1 = await HandWorker.ConnectAsync(channel, "w1", first);
        Assert.Equal(HttpStatusCode.OK, (await PutAsync(http, await w1.GrantAsync(index, WrongSizePng), WrongSizePng)).StatusCode);
        await w1.ReportAsync(index, WrongSizePng);
        await gate.DeletionStarted.WaitAsync(TimeSpan.FromSeconds(30));

        // Meanwhile its lease lapsed and another worker, which took the shard over, sends both images on its stream.
        var second = await TakeOverAsync(farm, first, "w2");
        using var w2 = await HandWorker.ConnectAsync(channel, "w2", second);
        await w2.SendAsync(GoodPng, index, other);
        await Eventually.HoldsAsync(async () => await farm.Redis.HashExistsAsync(FarmKeys.JobResults(jobId), other), "the other image to be recorded");

        // The deletion goes on; then the refusal is counted.
        gate.Release();
        await Eventually.HoldsAsync(() => Task.FromResult(rejected.GetValueOrDefault("bad_result") == 1), "the bad upload to be refused");

        // A result the job records is what users download: the image whose stored object was on its way out was not
        // recorded meanwhile (that would be a result with nothing behind it), and the bad bytes are gone.
        foreach (var (field, value) in (await farm.Redis.HashGetAllAsync(FarmKeys.JobResults(jobId))).Select(e => ((uint)e.Name, (string)e.Value!)))
            Assert.Equal(value.Split(':')[0], (await store.FindAsync(jobId, field, CancellationToken.None))?.Sha256);
        Assert.False(await farm.Redis.HashExistsAsync(FarmKeys.JobResults(jobId), index));
        Assert.Null(await store.FindAsync(jobId, index, CancellationToken.None));

        // The worker that took the shard over did nothing wrong and cannot send the image again: its delivery, ended
        // well, is handed back at once to render it.
        await w2.EndAsync();
        await Eventually.HoldsAsync(async () => (await farm.Redis.StreamPendingMessagesAsync(second.Stream, FarmKeys.WorkerGroup, 1,
            StackExchange.Redis.RedisValue.Null, second.EntryId, second.EntryId)).Single().ConsumerName == FarmKeys.ReleasedConsumer, "the shard to be handed back");
    }

    /// <summary>The coordinator's result store, with the first deletion of one image held until the test lets it go on.</summary>
    private sealed class FirstImageDeletionHeld(IResultStore store, FirstImageDeletionHeld.Gate gate) : IResultStore
    {
        public static Gate Install(IServiceCollection services)
        {
            var gate = new Gate();
            var real = services.Last(d => d.ServiceType == typeof(IResultStore));
            services.AddSingleton<IResultStore>(sp => new FirstImageDeletionHeld((IResultStore)real.ImplementationFactory!(sp), gate));
            return gate;
        }

        public sealed class Gate
        {
            private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);
            private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);
            private int _deletions;

            public Task DeletionStarted => _started.Task;

            public void Release() => _released.TrySetResult();

            internal Task PassAsync(CancellationToken cancellationToken)
            {
                if (Interlocked.Increment(ref _deletions) > 1) return Task.CompletedTask;
                _started.TrySetResult();
                return _released.Task.WaitAsync(cancellationToken);
            }
        }

        public async Task DeleteAsync(string jobId, uint index, CancellationToken cancellationToken)
        {
            await gate.PassAsync(cancellationToken);
            await store.DeleteAsync(jobId, index, cancellationToken);
        }

        public Task<StoredObject> PutIfAbsentAsync(string jobId, uint index, ReadOnlyMemory<byte> png, CancellationToken cancellationToken) =>
            store.PutIfAbsentAsync(jobId, index, png, cancellationToken);
        public Task<Stream?> OpenReadAsync(string jobId, uint index, CancellationToken cancellationToken) => store.OpenReadAsync(jobId, index, cancellationToken);
        public Task<long> DeleteJobAsync(string jobId, CancellationToken cancellationToken) => store.DeleteJobAsync(jobId, cancellationToken);
        public bool CanPresign => store.CanPresign;
        public Task<PresignedImage?> PresignedUrlAsync(string jobId, uint index, TimeSpan ttl, CancellationToken cancellationToken) =>
            store.PresignedUrlAsync(jobId, index, ttl, cancellationToken);
        public PresignedImage Presign(string jobId, uint index, long sizeBytes, TimeSpan ttl) => store.Presign(jobId, index, sizeBytes, ttl);
        public bool CanTakeUploads => store.CanTakeUploads;
        public UploadTarget PresignUpload(string jobId, uint index, ReadOnlySpan<byte> sha256, long sizeBytes, TimeSpan ttl) =>
            store.PresignUpload(jobId, index, sha256, sizeBytes, ttl);
        public Task<StoredObject?> FindAsync(string jobId, uint index, CancellationToken cancellationToken) => store.FindAsync(jobId, index, cancellationToken);
    }

    /// <summary>A worker's stream driven by hand for one delivery: it asks for upload grants and reports uploads.</summary>
    private sealed class HandWorker(AsyncDuplexStreamingCall<WorkerMessage, CoordinatorMessage> call, ShardRef shard) : IDisposable
    {
        private ulong _requests;

        public static async Task<HandWorker> ConnectAsync(GrpcChannel channel, string workerId, ShardRef shard) =>
            new((await FarmCluster.ConnectWorkerAsync(channel, workerId)).Call, shard);

        private static ResultDigest Digest(uint index, byte[] bytes) =>
            new() { Index = index, Sha256 = ByteString.CopyFrom(SHA256.HashData(bytes)), SizeBytes = (ulong)bytes.Length };

        /// <summary>Asks for the upload of <paramref name="bytes"/> as the image; the coordinator's one target.</summary>
        public async Task<UploadTarget> GrantAsync(uint index, byte[] bytes)
        {
            var id = ++_requests;
            await call.RequestStream.WriteAsync(new WorkerMessage { UploadRequest = new UploadRequest { RequestId = id, Shard = shard, Images = { Digest(index, bytes) } } });
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            Assert.True(await call.ResponseStream.MoveNext(timeout.Token));
            Assert.Equal(id, call.ResponseStream.Current.UploadGrant.RequestId);
            return Assert.Single(call.ResponseStream.Current.UploadGrant.Targets);
        }

        /// <summary>Reports the image uploaded as <paramref name="bytes"/> (or, <paramref name="foundStored"/>, refused because it was stored).</summary>
        public Task ReportAsync(uint index, byte[] bytes, bool foundStored = false) =>
            call.RequestStream.WriteAsync(new WorkerMessage
            {
                Results = new ShardResults { Shard = shard, Images = { new ShardImage { Index = index, Uploaded = new ResultDigest(Digest(index, bytes)) { FoundStored = foundStored } } } },
            });

        /// <summary>Ends the delivery well: every image it has is sent.</summary>
        public Task EndAsync() => call.RequestStream.WriteAsync(new WorkerMessage { ShardEnd = new ShardEnd { Shard = shard } });

        /// <summary>Sends <paramref name="png"/> as each image on the stream, in one batch, as a worker does whose uploads failed (or that does not upload).</summary>
        public Task SendAsync(byte[] png, params uint[] indices) =>
            call.RequestStream.WriteAsync(new WorkerMessage
            {
                Results = new ShardResults { Shard = shard, Images = { indices.Select(i => new ShardImage { Index = i, Png = ByteString.CopyFrom(png) }) } },
            });

        public void Dispose() => call.Dispose();
    }
}
