using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.DependencyInjection;
using RenderFarm.Diffusion.Imaging;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Imaging;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// Result PNGs over HTTP/1.1 (the coordinator's Uploads endpoint): a real worker uploads them and names each upload on
/// its stream; the upload needs its stream's token and a length; a results message must fit the upload it names; and a
/// worker whose uploads fail sends its PNGs on the stream.
/// </summary>
public sealed class ResultUploadTests : IAsyncLifetime
{
    private const int ShardSize = 4;
    private FarmCluster _farm = null!;

    /// <summary>A coordinator with its gRPC endpoint and an Uploads endpoint, both on free ports.</summary>
    private static Action<Dictionary<string, string?>> WithUploads(string? uploadUrl = null) => s =>
    {
        s["Kestrel:Endpoints:Grpc:Url"] = "http://127.0.0.1:0";
        s["Kestrel:Endpoints:Uploads:Url"] = "http://127.0.0.1:0";
        if (uploadUrl is not null) s["Farm:UploadUrl"] = uploadUrl;
    };

    public async Task InitializeAsync() => _farm = await FarmCluster.StartAsync(workers: 0, shardSize: ShardSize, configure: WithUploads());

    public async Task DisposeAsync() => await _farm.DisposeAsync();

    private static JobHeader Header(uint size) =>
        new() { Params = new GenerationParams { Width = size, Height = size, Steps = 2, GuidanceScale = 7f }, Seeds = { 3 } };

    private static byte[] Png(int side, byte shade) => PngEncoder.Encode(Enumerable.Repeat(shade, side * side * 3).ToArray(), side, side);

    /// <summary>Sums what one coordinator's <c>renderfarm.results.uploaded</c> counts (its own meter factory's meter only).</summary>
    private sealed class UploadedBytes : IDisposable
    {
        private readonly MeterListener _listener = new();
        private long _total;

        public UploadedBytes(FarmCluster farm)
        {
            var factory = farm.CoordinatorServices.GetRequiredService<IMeterFactory>();
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Name == "renderfarm.results.uploaded" && ReferenceEquals(instrument.Meter.Scope, factory)) listener.EnableMeasurementEvents(instrument);
            };
            _listener.SetMeasurementEventCallback<long>((_, value, _, _) => Interlocked.Add(ref _total, value));
            _listener.Start();
        }

        public long Total => Interlocked.Read(ref _total);

        public void Dispose() => _listener.Dispose();
    }

    private long StoredBytes(string jobId) =>
        Directory.EnumerateFiles(Path.Combine(_farm.StorageDirectory, jobId), "*.png").Sum(f => new FileInfo(f).Length);

    [Fact]
    public async Task AWorkersResultsGoByUploadAndAreStoredAndListedAsOnTheStream()
    {
        using var uploaded = new UploadedBytes(_farm);
        await _farm.StartWorkerAsync("uploader");
        var job = await _farm.SubmitAsync(Header(64), Enumerable.Range(0, 2 * ShardSize).Select(i => new PromptItem { Prompt = $"upload {i}" }));

        var events = await _farm.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(2));
        Assert.Equal(JobState.Completed, events[^1].JobFinished.State);
        Assert.Equal(2 * ShardSize, _farm.StoredPngs(job.JobId));
        // Every PNG stored came by upload, byte for byte.
        Assert.Equal(StoredBytes(job.JobId), uploaded.Total);
        var listed = await _farm.Jobs.ListImagesAsync(new ListImagesRequest { JobId = job.JobId });
        Assert.Equal(2 * ShardSize, listed.Images.Count);
        foreach (var image in listed.Images)
        {
            var stored = await File.ReadAllBytesAsync(Path.Combine(_farm.StorageDirectory, job.JobId, $"{image.Index:D6}.png"));
            Assert.Equal(image.Sha256, Convert.ToHexStringLower(SHA256.HashData(stored)));
            var decoded = ImageDecoder.Decode(stored, grey: false, long.MaxValue, "result");
            Assert.Equal((64, 64), (decoded.Width, decoded.Height));
        }
    }

    [Fact]
    public async Task AWorkerWhoseUploadsFailSendsItsResultsOnTheStream()
    {
        // The coordinator tells workers to upload to a port nothing listens on.
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: ShardSize,
            configure: WithUploads($"http://127.0.0.1:{RedisServer.FreePort()}"));
        await farm.StartWorkerAsync("fallback");
        var job = await farm.SubmitAsync(Header(64), Enumerable.Range(0, 2 * ShardSize).Select(i => new PromptItem { Prompt = $"fallback {i}" }));
        var events = await farm.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(2));
        Assert.Equal(JobState.Completed, events[^1].JobFinished.State);
        Assert.Equal(2 * ShardSize, farm.StoredPngs(job.JobId));
    }

    private async Task<(AsyncDuplexStreamingCall<WorkerMessage, CoordinatorMessage> Call, Welcome Welcome)> ConnectAsync(GrpcChannel channel, string workerId)
    {
        var call = new WorkerService.WorkerServiceClient(channel).Connect();
        await call.RequestStream.WriteAsync(new WorkerMessage { Hello = new WorkerHello { WorkerId = workerId, Models = { FarmCluster.Model }, MaxBatch = ShardSize } });
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        return (call, call.ResponseStream.Current.Welcome);
    }

    /// <summary>The welcome's URL with its "*" host as the worker would resolve it (the coordinator's loopback address).</summary>
    private static Uri UploadUri(Welcome welcome)
    {
        Assert.StartsWith("http://*:", welcome.UploadUrl);
        Assert.EndsWith("/v1/worker/uploads", welcome.UploadUrl);
        return new Uri(welcome.UploadUrl.Replace("*", "127.0.0.1"));
    }

    private static async Task<(HttpStatusCode Status, string Body)> PutAsync(Uri uri, string? token, HttpContent content)
    {
        using var http = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Put, uri) { Content = content };
        if (token is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var response = await http.SendAsync(request);
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    /// <summary>A body whose length is not known up front (sent chunked).</summary>
    private sealed class UnknownLength(byte[] bytes) : HttpContent
    {
        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) => stream.WriteAsync(bytes).AsTask();
        protected override bool TryComputeLength(out long length) { length = 0; return false; }
    }

    [Fact]
    public async Task AnUploadNeedsItsStreamsTokenAndALengthAndTheTokenEndsWithTheStream()
    {
        using var channel = GrpcChannel.ForAddress(_farm.CoordinatorUrl);
        var (call, welcome) = await ConnectAsync(channel, "token-holder");
        var uri = UploadUri(welcome);
        Assert.NotEmpty(welcome.UploadToken);
        var (_, other) = await ConnectAsync(channel, "other-worker");
        Assert.NotEqual(welcome.UploadToken, other.UploadToken);

        Assert.Equal(HttpStatusCode.Unauthorized, (await PutAsync(uri, null, new ByteArrayContent([1, 2, 3]))).Status);
        Assert.Equal(HttpStatusCode.Unauthorized, (await PutAsync(uri, "not-a-token", new ByteArrayContent([1, 2, 3]))).Status);
        Assert.Equal(HttpStatusCode.LengthRequired, (await PutAsync(uri, welcome.UploadToken, new UnknownLength([1, 2, 3]))).Status);
        var (status, id) = await PutAsync(uri, welcome.UploadToken, new ByteArrayContent([1, 2, 3]));
        Assert.Equal((HttpStatusCode.OK, "1"), (status, id));

        await call.RequestStream.CompleteAsync();
        while (await call.ResponseStream.MoveNext(CancellationToken.None)) { }
        call.Dispose();
        await Eventually.HoldsAsync(async () => (await PutAsync(uri, welcome.UploadToken, new ByteArrayContent([1]))).Status == HttpStatusCode.Unauthorized,
            "the token to end with its stream");
    }

    [Fact]
    public async Task AResultsMessageMustFitTheUploadItNamesOrItIsDiscardedWhole()
    {
        var job = await _farm.SubmitAsync(Header(64), Enumerable.Range(0, ShardSize).Select(i => new PromptItem { Prompt = $"fit {i}" }));
        using var channel = GrpcChannel.ForAddress(_farm.CoordinatorUrl);
        var (call, welcome) = await ConnectAsync(channel, "fitter");
        using var _ = call;
        var uri = UploadUri(welcome);
        var (shard, content) = await _farm.DeliverFirstAsync("fitter");

        async Task<(string Id, List<ShardImage> Images)> UploadAsync(byte shade)
        {
            var pngs = content.Images.Select(i => Png(64, (byte)(shade + i.Index))).ToList();
            var (status, id) = await PutAsync(uri, welcome.UploadToken, new ByteArrayContent([.. pngs.SelectMany(p => p)]));
            Assert.Equal(HttpStatusCode.OK, status);
            return (id, content.Images.Select((task, n) => new ShardImage { Index = task.Index, UploadedBytes = (uint)pngs[n].Length, RenderSeconds = 0.01 }).ToList());
        }
        Task SendAsync(string upload, IEnumerable<ShardImage> images) =>
            call.RequestStream.WriteAsync(new WorkerMessage { Results = new ShardResults { Shard = shard, Upload = upload, Images = { images } } });

        // Sizes that do not add up to the upload: nothing of it is stored, and the upload is gone.
        var (misfit, misfitImages) = await UploadAsync(10);
        misfitImages[0].UploadedBytes += 1;
        await SendAsync(misfit, misfitImages);
        // An upload this stream never made, and the first one named again.
        var (_, unnamed) = await UploadAsync(20);
        await SendAsync("12345", unnamed);
        misfitImages[0].UploadedBytes -= 1;
        await SendAsync(misfit, misfitImages);
        // PNG bytes in the message as well as an upload.
        var (both, bothImages) = await UploadAsync(30);
        bothImages[0].Png = ByteString.CopyFrom(Png(64, 1));
        await SendAsync(both, bothImages);

        var (good, goodImages) = await UploadAsync(40);
        await SendAsync(good, goodImages);
        // One stream, in order: once the last message's images are recorded, every one before it was applied.
        var events = await _farm.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(1));
        Assert.Equal(JobState.Completed, events[^1].JobFinished.State);
        foreach (var task in content.Images)
        {
            var stored = await File.ReadAllBytesAsync(Path.Combine(_farm.StorageDirectory, job.JobId, $"{task.Index:D6}.png"));
            Assert.Equal(Png(64, (byte)(40 + task.Index)), stored);
        }
    }
}
