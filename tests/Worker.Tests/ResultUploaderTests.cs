using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;
using RenderFarm.Protocol;

namespace RenderFarm.Worker.Tests;

/// <summary>
/// The worker's side of direct uploads against a real HTTP server standing in for the store: each granted image is PUT
/// with the grant's headers, and reported as uploaded only when the store took it (or had it already); anything else
/// goes back with its PNG, for the stream.
/// </summary>
public sealed class ResultUploaderTests : IDisposable
{
    private static readonly ShardRef Shard = new() { JobId = "job", ShardIndex = 1, Model = "m", EntryId = "1-0", Stream = "tasks:m", Delivery = 1 };

    private readonly HttpListener _store = new();
    private readonly ConcurrentDictionary<string, (byte[] Body, string? Checksum, string? ContentType)> _puts = new();
    private readonly string _url;

    public ResultUploaderTests()
    {
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        var port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        _url = $"http://127.0.0.1:{port}/";
        _store.Prefixes.Add(_url);
        _store.Start();
        _ = ServeAsync();
    }

    /// <summary>Answers each PUT with the status its path names (/200/…, /412/…, /500/…), keeping what it was sent.</summary>
    private async Task ServeAsync()
    {
        while (_store.IsListening)
        {
            HttpListenerContext context;
            try { context = await _store.GetContextAsync(); }
            catch (Exception) { return; }
            using var body = new MemoryStream();
            await context.Request.InputStream.CopyToAsync(body);
            _puts[context.Request.Url!.AbsolutePath] = (body.ToArray(), context.Request.Headers["x-amz-checksum-sha256"], context.Request.ContentType);
            context.Response.StatusCode = int.Parse(context.Request.Url.Segments[1].TrimEnd('/'));
            context.Response.Close();
        }
    }

    private static ShardImage Image(uint index) =>
        new() { Index = index, Png = ByteString.CopyFrom(Enumerable.Repeat((byte)index, 1000 + (int)index).ToArray()), RenderSeconds = 0.25 };

    private UploadTarget Target(uint index, int status, UploadRequest request) => new()
    {
        Index = index,
        Url = $"{_url}{status}/{index}.png",
        Headers =
        {
            new HttpHeader { Name = "Content-Type", Value = "image/png" },
            new HttpHeader { Name = "x-amz-checksum-sha256", Value = Convert.ToBase64String(request.Images.Single(i => i.Index == index).Sha256.Span) },
        },
    };

    [Fact]
    public async Task EachImageIsReportedUploadedOnlyWhenTheStoreTookItOrHadItAndOtherwiseKeepsItsPng()
    {
        using var uploader = new ResultUploader(NullLogger<ResultUploader>.Instance);
        ShardImage[] images = [Image(0), Image(1), Image(2), Image(3)];
        UploadRequest? asked = null;

        var sent = await uploader.UploadAsync((request, _) =>
        {
            asked = request;
            // 0 is taken, 1 was stored by another delivery, 2 the store refuses, 3 gets no grant.
            return Task.FromResult<UploadGrant?>(new UploadGrant { Targets = { Target(0, 200, request), Target(1, 412, request), Target(2, 500, request) } });
        }, Shard, images, CancellationToken.None);

        Assert.NotNull(asked);
        Assert.Equal(Shard, asked.Shard);
        Assert.Equal(images.Select(i => (i.Index, Convert.ToHexStringLower(SHA256.HashData(i.Png.Span)), (ulong)i.Png.Length)),
            asked.Images.Select(d => (d.Index, Convert.ToHexStringLower(d.Sha256.Span), d.SizeBytes)));

        Assert.Equal([0u, 1u, 2u, 3u], sent.Select(i => i.Index));
        Assert.All(sent, i => Assert.Equal(0.25, i.RenderSeconds));
        Assert.True(sent[0].Png.IsEmpty);
        Assert.Equal(asked.Images[0], sent[0].Uploaded);
        Assert.True(sent[1].Png.IsEmpty);
        Assert.True(sent[1].Uploaded.FoundStored);
        Assert.Equal((images[2].Png, images[3].Png), (sent[2].Png, sent[3].Png));
        Assert.Null(sent[2].Uploaded);
        Assert.Null(sent[3].Uploaded);

        // The store got the PNG's bytes with the grant's headers.
        var put = _puts["/200/0.png"];
        Assert.Equal(images[0].Png.ToByteArray(), put.Body);
        Assert.Equal(Convert.ToBase64String(SHA256.HashData(images[0].Png.Span)), put.Checksum);
        Assert.Equal("image/png", put.ContentType);
        Assert.False(_puts.ContainsKey("/200/3.png"));
    }

    [Fact]
    public async Task WithoutAGrantEveryImageKeepsItsPngAndNothingIsPut()
    {
        using var uploader = new ResultUploader(NullLogger<ResultUploader>.Instance);
        ShardImage[] images = [Image(0), Image(1)];

        var sent = await uploader.UploadAsync((_, _) => Task.FromResult<UploadGrant?>(null), Shard, images, CancellationToken.None);

        Assert.Equal(images, sent);
        Assert.Empty(_puts);
    }

    [Fact]
    public async Task AStoreThatCannotBeReachedLeavesTheImagesForTheStream()
    {
        using var uploader = new ResultUploader(NullLogger<ResultUploader>.Instance);
        ShardImage[] images = [Image(0)];
        var unreachable = new TcpListener(IPAddress.Loopback, 0);
        unreachable.Start();
        var port = ((IPEndPoint)unreachable.LocalEndpoint).Port;
        unreachable.Stop(); // nothing listens there now: the connection is refused

        var sent = await uploader.UploadAsync((request, _) => Task.FromResult<UploadGrant?>(new UploadGrant
        {
            Targets = { new UploadTarget { Index = 0, Url = $"http://127.0.0.1:{port}/200/0.png" } },
        }), Shard, images, CancellationToken.None);

        Assert.Equal(images[0].Png, Assert.Single(sent).Png);
        Assert.Null(sent[0].Uploaded);
    }

    public void Dispose() => _store.Close();
}
