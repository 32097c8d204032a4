using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Net;
using System.Security.Cryptography;
using Google.Protobuf;
using Grpc.Net.Client;
using RenderFarm.Coordinator.Diagnostics;
using RenderFarm.Diffusion.Imaging;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.FarmState;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests.Storage;

/// <summary>
/// <c>Farm:FileSystem:UploadUrl</c>: with a directory store, workers PUT each PNG to the coordinator's web endpoint
/// (HTTP/1.1) through a URL it signed for the image's sha256 and size, instead of sending it in the gRPC stream; the
/// coordinator streams it to the file while hashing it. A real farm on real Kestrel endpoints, and a hostile worker by hand.
/// </summary>
public sealed class FileSystemUploadTests
{
    /// <summary>A farm whose coordinator listens for gRPC (HTTP/2) and on a web endpoint (HTTP/1.1) that takes uploads.</summary>
    private static Task<FarmCluster> StartAsync(int workers) => FarmCluster.StartAsync(workers, shardSize: 2, configure: s =>
    {
        var web = $"http://127.0.0.1:{RedisServer.FreePort()}";
        // "Grpc" sorts before "Web", so the cluster's first address (its gRPC URL) stays the HTTP/2-only endpoint.
        s["Kestrel:Endpoints:Grpc:Url"] = "http://127.0.0.1:0";
        s["Kestrel:Endpoints:Web:Url"] = web;
        s["Farm:FileSystem:UploadUrl"] = web;
    });

    private static MeterListener CountUploads(FarmCluster farm, ConcurrentBag<long> uploads)
    {
        var meters = farm.CoordinatorServices.GetRequiredService<IMeterFactory>();
        var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Scope == meters && instrument.Name == CoordinatorMetrics.ResultsUploadedName) l.EnableMeasurementEvents(instrument);
            },
        };
        listener.SetMeasurementEventCallback<long>((_, value, _, _) => uploads.Add(value));
        listener.Start();
        return listener;
    }

    [Fact]
    public async Task AWorkersResultsComeAsUploadsToTheWebEndpointAndAreStoredWithTheirSha256()
    {
        await using var farm = await StartAsync(workers: 1);
        var uploads = new ConcurrentBag<long>();
        using var listener = CountUploads(farm, uploads);

        var header = new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7.5f, Scheduler = "euler" } };
        header.Seeds.AddRange([1, 2]);
        var submitted = await farm.SubmitAsync(header, [new PromptItem { Prompt = "a lighthouse" }, new PromptItem { Prompt = "a red fox" }]);
        var events = await farm.WatchToEndAsync(submitted.JobId, TimeSpan.FromMinutes(2));
        Assert.Equal(JobState.Completed, events[^1].JobFinished.State);

        Assert.Equal(4, uploads.Sum()); // every image came as an upload, none in the stream
        var images = await farm.Jobs.DownloadAllAsync(submitted.JobId);
        Assert.Equal(4, images.Count);
        foreach (var image in images)
        {
            Assert.Equal(image.Info.Sha256, image.Sha256);
            var file = Path.Combine(farm.StorageDirectory, submitted.JobId, $"{image.Info.Index:D6}.png");
            Assert.Equal(image.Sha256, Convert.ToHexStringLower(SHA256.HashData(await File.ReadAllBytesAsync(file))));
            Assert.True(RenderFarm.Imaging.ImageHeader.IsPng(image.Png));
        }
    }

    [Fact]
    public async Task AnUploadOfOtherBytesOrToAChangedUrlIsRefusedAndTheFirstResultWins()
    {
        await using var farm = await StartAsync(workers: 0);
        var job = await farm.SubmitAsync(
            new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7f }, Seeds = { 3 } },
            Enumerable.Range(0, 2).Select(i => new PromptItem { Prompt = $"upload {i}" }));
        using var channel = GrpcChannel.ForAddress(farm.CoordinatorUrl);
        var (call, welcome) = await FarmCluster.ConnectWorkerAsync(channel, "w1");
        using var _ = call;
        Assert.True(welcome.DirectUploads);
        var (mine, myShard) = await farm.DeliverFirstAsync("w1");
        var index = myShard.Images[0].Index;
        var good = PngEncoder.Encode(new byte[64 * 64 * 3], 64, 64);
        var other = PngEncoder.Encode(Enumerable.Repeat((byte)200, 64 * 64 * 3).ToArray(), 64, 64);
        ResultDigest Digest(byte[] bytes) => new() { Index = index, Sha256 = ByteString.CopyFrom(SHA256.HashData(bytes)), SizeBytes = (ulong)bytes.Length };
        ulong next = 0;
        async Task<UploadTarget> GrantAsync(byte[] png)
        {
            await call.RequestStream.WriteAsync(new WorkerMessage { UploadRequest = new UploadRequest { RequestId = ++next, Shard = mine, Images = { Digest(png) } } });
            Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
            return Assert.Single(call.ResponseStream.Current.UploadGrant.Targets);
        }

        using var http = new HttpClient();
        var target = await GrantAsync(good);
        var path = Path.Combine(farm.StorageDirectory, job.JobId, $"{index:D6}.png");
        // Other bytes under the grant (as many, or not): refused, nothing stored. The URL changed for them: refused
        // before any byte is read.
        var tampered = (byte[])good.Clone();
        tampered[^20] ^= 1;
        Assert.Equal(HttpStatusCode.BadRequest, (await DirectUploadTests.PutAsync(http, target, tampered)).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await DirectUploadTests.PutAsync(http, target, other)).StatusCode);
        var forged = new UploadTarget(target) { Url = target.Url.Replace($"size={good.Length}", $"size={other.Length}") };
        Assert.Equal(HttpStatusCode.Forbidden, (await DirectUploadTests.PutAsync(http, forged, other)).StatusCode);
        Assert.False(File.Exists(path));

        // The granted bytes are stored; a second delivery's upload finds them there, says so, and what is stored counts.
        Assert.Equal(HttpStatusCode.OK, (await DirectUploadTests.PutAsync(http, target, good)).StatusCode);
        Assert.Equal(HttpStatusCode.PreconditionFailed, (await DirectUploadTests.PutAsync(http, await GrantAsync(other), other)).StatusCode);
        await call.RequestStream.WriteAsync(new WorkerMessage
        {
            Results = new ShardResults { Shard = mine, Images = { new ShardImage { Index = index, Uploaded = new ResultDigest(Digest(other)) { FoundStored = true } } } },
        });
        await Eventually.HoldsAsync(async () => await farm.Redis.HashLengthAsync(FarmKeys.JobResults(job.JobId)) == 1, "the image to be recorded");
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(good)), Assert.Single(await farm.Jobs.DownloadAllAsync(job.JobId)).Info.Sha256);
        Assert.Equal(good, await File.ReadAllBytesAsync(path));
        await call.RequestStream.CompleteAsync();
    }
}
