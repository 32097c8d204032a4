using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using Google.Protobuf;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using RenderFarm.Client.Pull;
using RenderFarm.Client.Tests.Support;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Tests.Pull;

/// <summary>
/// <c>farm pull</c> against presigned URLs: a real HTTP server on loopback (Kestrel) plays the result store, a scripted
/// JobService the coordinator (URLs when asked for them, bytes otherwise).
/// </summary>
public sealed class PresignedPullTests : IAsyncLifetime, IDisposable
{
    private const int ImageCount = 12;
    private readonly TempDir _dir = new();
    private readonly List<(ImageInfo Info, byte[] Bytes)> _images = [];
    private readonly ConcurrentDictionary<int, int> _gets = new();
    private readonly ConcurrentDictionary<int, Func<int, HttpContext, Task<bool>>> _misbehave = new();
    private WebApplication? _store;
    private string _storeUrl = "";
    private int _inFlight;
    private int _maxInFlight;

    /// <summary>When set, each GET waits until this many are in flight at once (or 5 s pass): proves the fetches overlap.</summary>
    private int _rendezvous;

    /// <summary>When set, the pull is killed (cancelled) as the store receives its 4th GET: at least one image is saved by then.</summary>
    private CancellationTokenSource? _killAtFourthGet;
    private int _getsServed;

    public PresignedPullTests()
    {
        for (uint i = 0; i < ImageCount; i++)
        {
            var bytes = new byte[1000 + (int)i * 7919];
            new Random((int)i).NextBytes(bytes);
            _images.Add((new ImageInfo
            {
                Index = i, Prompt = $"prompt number {i}", NegativePrompt = "blurry", Seed = 100 + i,
                Sha256 = Convert.ToHexStringLower(SHA256.HashData(bytes)), SizeBytes = (ulong)bytes.Length,
            }, bytes));
        }
    }

    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0));
        _store = builder.Build();
        _store.MapGet("/img/{index:int}", ServeAsync);
        await _store.StartAsync();
        _storeUrl = _store.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
    }

    public async Task DisposeAsync()
    {
        if (_store is not null)
        {
            await _store.DisposeAsync();
        }
    }

    public void Dispose() => _dir.Dispose();

    private async Task ServeAsync(int index, HttpContext http)
    {
        var attempt = _gets.AddOrUpdate(index, 1, (_, n) => n + 1);
        // One atomic count of every GET: summing _gets after the increment let two concurrent GETs both read 5, and then
        // nothing killed the pull.
        if (Interlocked.Increment(ref _getsServed) == 4 && _killAtFourthGet is { } kill)
        {
            await kill.CancelAsync();
        }

        var now = Interlocked.Increment(ref _inFlight);
        InterlockedMax(ref _maxInFlight, now);
        try
        {
            if (_rendezvous > 0)
            {
                var deadline = DateTime.UtcNow.AddSeconds(5);
                while (Volatile.Read(ref _maxInFlight) < _rendezvous && DateTime.UtcNow < deadline)
                {
                    await Task.Delay(5);
                }
            }

            if (_misbehave.TryGetValue(index, out var misbehave) && await misbehave(attempt, http))
            {
                return;
            }

            var bytes = _images[index].Bytes;
            http.Response.ContentLength = bytes.Length;
            await http.Response.Body.WriteAsync(bytes);
        }
        finally
        {
            Interlocked.Decrement(ref _inFlight);
        }
    }

    private static void InterlockedMax(ref int target, int value)
    {
        for (var seen = Volatile.Read(ref target); value > seen; seen = Volatile.Read(ref target))
        {
            if (Interlocked.CompareExchange(ref target, value, seen) == seen)
            {
                return;
            }
        }
    }

    /// <summary>The coordinator: one URL chunk per image when asked for URLs, the bytes in 4 KiB chunks otherwise.</summary>
    private async IAsyncEnumerable<ResultChunk> Serve(DownloadResultsRequest request, string? storeUrl = null)
    {
        foreach (var (info, bytes) in _images.Where(i => Wants(request, i.Info.Index)))
        {
            await Task.Yield();
            if (request.PresignedUrls)
            {
                yield return new ResultChunk { Image = new ImageInfo(info) { Url = $"{storeUrl ?? _storeUrl}/img/{info.Index}?X-Amz-Signature=abc" } };
                continue;
            }

            yield return new ResultChunk { Image = info };
            for (var offset = 0; offset < bytes.Length; offset += 4096)
            {
                yield return new ResultChunk { Data = ByteString.CopyFrom(bytes, offset, Math.Min(4096, bytes.Length - offset)) };
            }
        }
    }

    private CliHarness Harness(string? storeUrl = null)
    {
        var cli = new CliHarness();
        cli.Service.OnGetJob = r => new JobStatus { JobId = r.JobId, State = JobState.Completed, ImageCount = ImageCount, ImagesDone = ImageCount };
        cli.Service.OnDownload = (request, _) => Serve(request, storeUrl);
        return cli;
    }

    private string Folder(string name) => Path.Combine(_dir.Path, name);

    /// <summary>What a current coordinator sends for <paramref name="request"/> (the fake's rule: skip list and partition).</summary>
    private static bool Wants(DownloadResultsRequest request, uint index) => new FakeJobService().Wants(request, index);

    /// <summary>How many images <paramref name="request"/> asks for.</summary>
    private static int AskedCount(DownloadResultsRequest request) => Enumerable.Range(0, ImageCount).Count(i => Wants(request, (uint)i));

    /// <summary>The images some request of <paramref name="requests"/> asks for.</summary>
    private static uint[] Asked(IEnumerable<DownloadResultsRequest> requests) =>
        requests.SelectMany(r => Enumerable.Range(0, ImageCount).Select(i => (uint)i).Where(i => Wants(r, i))).Distinct().Order().ToArray();

    private static Dictionary<string, string> Snapshot(string folder) =>
        Directory.EnumerateFiles(folder).ToDictionary(f => Path.GetFileName(f)!, f => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(f))));

    /// <summary>What a byte-stream pull of the same job leaves: the reference every URL pull must match.</summary>
    private async Task<Dictionary<string, string>> StreamedReferenceAsync()
    {
        var cli = Harness();
        Assert.Equal(0, await cli.RunAsync("pull", "J", "--out", Folder("streamed"), "--via-coordinator"));
        Assert.All(cli.Service.DownloadRequests, r => Assert.False(r.PresignedUrls));
        return Snapshot(Folder("streamed"));
    }

    [Fact]
    public async Task PullFetchesPresignedUrlsInParallelAndEndsWithTheSameFilesAndManifestAsAStreamPull()
    {
        _rendezvous = 4;
        var cli = Harness();

        var code = await cli.RunAsync("pull", "J", "--out", Folder("urls"), "--parallel", "4", "--json");

        Assert.True(code == 0, cli.Error.ToString());
        // Four streams, each asking for URLs of every 4th image: together each image once.
        var requests = cli.Service.DownloadRequests;
        Assert.Equal(4, requests.Count);
        Assert.All(requests, r => Assert.True(r.PresignedUrls));
        Assert.Equal(ImageCount, requests.Sum(AskedCount));
        Assert.All(requests, r => Assert.Equal(4u, r.PartitionCount)); // the coordinator keeps to each partition
        Assert.Equal(Enumerable.Range(0, ImageCount).Select(i => (uint)i), Asked(requests));
        Assert.Equal(4, _maxInFlight);
        Assert.All(_gets.Values, n => Assert.Equal(1, n));
        Assert.Contains($"\"downloaded\":{ImageCount},\"skipped\":0,\"failed\":0,\"bytes\":{_images.Sum(i => i.Bytes.Length)},\"via_urls\":{ImageCount}",
            cli.OutLines.Single());
        _rendezvous = 0;
        Assert.Equal(await StreamedReferenceAsync(), Snapshot(Folder("urls")));
        Assert.Equal(Enumerable.Range(0, ImageCount).Select(i => $"\"index\":{i},"),
            File.ReadLines(Path.Combine(Folder("urls"), "manifest.jsonl")).Select(l => l[1..(l.IndexOf(',') + 1)]));
    }

    [Fact]
    public async Task AnExpiredUrlFallsBackToTheCoordinatorsByteStreamForThatImage()
    {
        _misbehave[5] = async (_, http) =>
        {
            http.Response.StatusCode = 403;
            await http.Response.WriteAsync("<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>");
            return true;
        };
        var cli = Harness();

        var code = await cli.RunAsync("pull", "J", "--out", Folder("urls"));

        Assert.True(code == 0, cli.Error.ToString());
        Assert.Equal(1, _gets[5]); // a 403 is not retried
        Assert.Equal([5u], Asked(cli.Service.DownloadRequests.Where(r => !r.PresignedUrls)));
        Assert.Contains("1 images could not be fetched from the result store (image 5: HTTP 403 Forbidden); streaming them through the coordinator",
            cli.Error.ToString());
        Assert.Equal(await StreamedReferenceAsync(), Snapshot(Folder("urls")));
    }

    [Fact]
    public async Task AFailedGetAndABodyCutShortAreRetriedWithoutTheCoordinator()
    {
        _misbehave[2] = async (attempt, http) =>
        {
            if (attempt > 2)
            {
                return false;
            }

            http.Response.StatusCode = 503;
            await http.Response.WriteAsync("slow down");
            return true;
        };
        _misbehave[7] = async (attempt, http) =>
        {
            if (attempt > 1)
            {
                return false;
            }

            // Announce the whole image, send half, drop the connection.
            var bytes = _images[7].Bytes;
            http.Response.ContentLength = bytes.Length;
            await http.Response.Body.WriteAsync(bytes.AsMemory(0, bytes.Length / 2));
            await http.Response.Body.FlushAsync();
            http.Abort();
            return true;
        };
        var cli = Harness();

        var code = await cli.RunAsync("pull", "J", "--out", Folder("urls"));

        Assert.True(code == 0, cli.Error.ToString());
        Assert.Equal(3, _gets[2]);
        Assert.Equal(2, _gets[7]);
        Assert.All(cli.Service.DownloadRequests, r => Assert.True(r.PresignedUrls));
        Assert.Equal(await StreamedReferenceAsync(), Snapshot(Folder("urls")));
    }

    [Fact]
    public async Task AUrlThatKeepsFailingIsTriedFourTimesThenComesThroughTheCoordinator()
    {
        _misbehave[6] = async (_, http) =>
        {
            http.Response.StatusCode = 500;
            await http.Response.WriteAsync("broken");
            return true;
        };
        var cli = Harness();

        var code = await cli.RunAsync("pull", "J", "--out", Folder("urls"));

        Assert.True(code == 0, cli.Error.ToString());
        Assert.Equal(PresignedFetcher.DefaultAttempts, _gets[6]);
        Assert.Contains("1 images could not be fetched from the result store (image 6: HTTP 500 Internal Server Error, 4 attempts)",
            cli.Error.ToString());
        Assert.Equal([6u], Asked(cli.Service.DownloadRequests.Where(r => !r.PresignedUrls)));
        Assert.Equal(await StreamedReferenceAsync(), Snapshot(Folder("urls")));
    }

    [Fact]
    public async Task AStoreObjectFailingItsChecksumLeavesNoFileAndExitsOne()
    {
        _misbehave[3] = async (_, http) =>
        {
            var bytes = (byte[])_images[3].Bytes.Clone();
            bytes[10] ^= 0xff;
            http.Response.ContentLength = bytes.Length;
            await http.Response.Body.WriteAsync(bytes);
            return true;
        };
        _misbehave[4] = async (_, http) =>
        {
            var bytes = _images[4].Bytes.Concat(new byte[100_000]).ToArray();
            await http.Response.Body.WriteAsync(bytes);
            return true;
        };
        var cli = Harness();

        var code = await cli.RunAsync("pull", "J", "--out", Folder("urls"));

        Assert.Equal(1, code);
        Assert.Contains("error: image 3: sha256 mismatch", cli.Error.ToString());
        Assert.Contains("error: image 4: the store sent more than the announced", cli.Error.ToString());
        var names = Directory.EnumerateFiles(Folder("urls")).Select(Path.GetFileName).ToList();
        Assert.DoesNotContain(names, n => n!.StartsWith("00003-", StringComparison.Ordinal) || n.StartsWith("00004-", StringComparison.Ordinal));
        Assert.DoesNotContain(names, n => n!.EndsWith(".part", StringComparison.Ordinal));
        Assert.Equal(ImageCount - 2, File.ReadAllLines(Path.Combine(Folder("urls"), "manifest.jsonl")).Length);
        Assert.All(cli.Service.DownloadRequests, r => Assert.True(r.PresignedUrls)); // the coordinator's bytes would fail the same check
    }

    [Fact]
    public async Task WhenNoUrlWorksThePullGivesUpOnThemAndStreamsEverythingThroughTheCoordinator()
    {
        var cli = Harness(storeUrl: $"http://127.0.0.1:{ClosedPort()}");

        var code = await cli.RunAsync("pull", "J", "--out", Folder("urls"), "--parallel", "2");

        Assert.True(code == 0, cli.Error.ToString());
        Assert.Contains("the result store's URLs keep failing", cli.Error.ToString());
        Assert.False(cli.Service.DownloadRequests[^1].PresignedUrls);
        Assert.Equal(await StreamedReferenceAsync(), Snapshot(Folder("urls")));
    }

    [Fact]
    public async Task APullKilledMidwayResumesToIdenticalFilesAndManifest()
    {
        var reference = await StreamedReferenceAsync();
        using var kill = new CancellationTokenSource();
        _killAtFourthGet = kill;
        var host = new FarmCliHost(new StringWriter(), new StringWriter())
        {
            GetEnvironmentVariable = _ => null,
            ClientFactory = _ => Harness().Service,
            Time = new InstantTime(),
        };

        var code = await FarmCli.RunAsync(["pull", "J", "--out", Folder("urls"), "--parallel", "3"], host, kill.Token);

        Assert.Equal(ExitCodes.Interrupted, code);
        Assert.InRange(File.ReadAllLines(Path.Combine(Folder("urls"), "manifest.jsonl")).Length, 1, ImageCount - 1);
        Assert.DoesNotContain(Directory.EnumerateFiles(Folder("urls")), f => f.EndsWith(".part", StringComparison.Ordinal));
        _killAtFourthGet = null;
        var rerun = Harness();
        Assert.Equal(0, await rerun.RunAsync("pull", "J", "--out", Folder("urls")));
        Assert.NotEmpty(rerun.Service.DownloadRequests.SelectMany(r => r.SkipIndices)); // what the killed pull saved is not asked for again
        Assert.Equal(reference, Snapshot(Folder("urls")));
    }

    [Fact]
    public async Task OnATerminalThePullDrawsAProgressBarInsteadOfSavedLines()
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var host = new FarmCliHost(stdout, stderr)
        {
            GetEnvironmentVariable = _ => null,
            ClientFactory = _ => Harness().Service,
            ErrorIsTerminal = true,
        };

        var code = await FarmCli.RunAsync(["pull", "J", "--out", Folder("urls")], host);

        Assert.True(code == 0, stderr.ToString());
        Assert.Equal(Path.GetFullPath(Folder("urls")) + "\n", stdout.ToString().ReplaceLineEndings("\n"));
        Assert.Contains($"{ImageCount}/{ImageCount} images", stderr.ToString());
        Assert.Contains($"{ImageCount} from the store's URLs", stderr.ToString());
    }

    [Theory]
    [InlineData("0")]
    [InlineData("65")]
    public async Task ParallelOutsideItsRangeIsAUsageError(string parallel)
    {
        var cli = Harness();

        Assert.Equal(ExitCodes.UsageError, await cli.RunAsync("pull", "J", "--out", Folder("urls"), "--parallel", parallel));
        Assert.Contains("--parallel must be between 1 and 64", cli.Error.ToString());
    }

    private static int ClosedPort()
    {
        using var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
