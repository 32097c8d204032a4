using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using RenderFarm.Diffusion.Imaging;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.FarmState;
using RenderFarm.Protocol;
using StackExchange.Redis;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// Results decoded by sample (<c>Farm:ResultDecodeFirst</c>, <c>Farm:ResultDecodeOneIn</c>) on a real coordinator:
/// a result that is not decoded still has its structure checked, and once one of a connection's results is refused,
/// every later one is decoded. Sampling is set to "never" here, so what is decoded is what the refusal turned on.
/// </summary>
public sealed class ResultDecodeSamplingTests : IAsyncLifetime
{
    private FarmCluster _farm = null!;

    public async Task InitializeAsync() =>
        _farm = await FarmCluster.StartAsync(workers: 0, shardSize: 4, configure: s =>
        {
            s["Farm:ResultDecodeFirst"] = "0";
            s["Farm:ResultDecodeOneIn"] = int.MaxValue.ToString();
        });

    public async Task DisposeAsync() => await _farm.DisposeAsync();

    private static byte[] Png(int size, byte shade) => PngEncoder.Encode(Enumerable.Repeat(shade, size * size * 3).ToArray(), size, size);

    private static WorkerMessage Result(ShardRef shard, uint index, byte[] png) =>
        new() { Results = new ShardResults { Shard = shard, Images = { new ShardImage { Index = index, Png = ByteString.CopyFrom(png) } } } };

    [Fact]
    public async Task AnUndecodedResultHasItsStructureCheckedAndAfterARefusalEveryResultIsDecoded()
    {
        var job = await _farm.SubmitAsync(
            new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7f }, Seeds = { 3 } },
            Enumerable.Range(0, 4).Select(i => new PromptItem { Prompt = $"sampled {i}" }));
        using var channel = GrpcChannel.ForAddress(_farm.CoordinatorUrl);
        var (worker, _) = await FarmCluster.ConnectWorkerAsync(channel, "sloppy");
        using var stream = worker;
        var (shard, content) = await _farm.DeliverFirstAsync("sloppy");
        var index = content.Images.Select(i => i.Index).ToArray();
        var good = Png(64, 40);
        var brokenInside = PngChunks.BrokenInsideItsDeflateData(Png(64, 90));
        var idat = PngChunks.Offset(good, "IDAT");

        // Not decoded: broken deflate data with every CRC right is stored (the documented limit of sampling) ...
        await worker.RequestStream.WriteAsync(Result(shard, index[0], brokenInside));
        // ... but the structure is checked on every result: a CRC that fails, a PNG cut off, another size.
        await worker.RequestStream.WriteAsync(Result(shard, index[1], PngChunks.Flip(good, idat + 8 + PngChunks.Length(good, idat) / 2)));
        await worker.RequestStream.WriteAsync(Result(shard, index[1], good[..^12]));
        await worker.RequestStream.WriteAsync(Result(shard, index[1], Png(32, 40)));
        // After those refusals the connection's results are all decoded: the same kind of break is refused now.
        await worker.RequestStream.WriteAsync(Result(shard, index[1], PngChunks.BrokenInsideItsDeflateData(good)));
        await worker.RequestStream.WriteAsync(Result(shard, index[2], PngChunks.BrokenInsideItsDeflateData(good)));
        // One stream, in order: once this one is stored, everything before it has been applied.
        await worker.RequestStream.WriteAsync(Result(shard, index[3], good));

        var stored = await StoredWhenAsync(job.JobId, index[3]);
        Assert.Equal([index[0], index[3]], stored.Keys.Order());
        Assert.Equal(Sha(brokenInside), stored[index[0]]);
        Assert.Equal(Sha(good), stored[index[3]]);
    }

    private static string Sha(byte[] bytes) => Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes));

    /// <summary>The job's stored results (index → sha256) once <paramref name="index"/> is done, read from its watch.</summary>
    private async Task<Dictionary<uint, string>> StoredWhenAsync(string jobId, uint index)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var watch = _farm.Jobs.WatchJob(new WatchJobRequest { JobId = jobId }, cancellationToken: cts.Token);
        var stored = new Dictionary<uint, string>();
        while (await watch.ResponseStream.MoveNext(cts.Token))
        {
            if (watch.ResponseStream.Current.ImageDone is not { } done) continue;
            stored[done.Index] = done.Sha256;
            if (done.Index == index) return stored;
        }
        throw new InvalidOperationException($"image {index} was never done");
    }
}
