using RenderFarm.Client.Pull;
using System.Security.Cryptography;
using Google.Protobuf;
using Grpc.Core;
using RenderFarm.Client.Tests.Support;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Tests.Pull;

public class PullCommandTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly CliHarness _cli = new();
    private readonly List<(ImageInfo Info, byte[] Bytes)> _images = [];

    public PullCommandTests()
    {
        AddImage(0, "a red fox", 11, 3000);
        AddImage(1, "../../escape attempt", 12, 10);
        AddImage(2, "a blue whale", 13, 70_000);
        _cli.Service.OnGetJob = r => new JobStatus { JobId = r.JobId, State = JobState.Completed, ImageCount = 3, ImagesDone = 3 };
        _cli.Service.OnDownload = (request, _) => Serve(request);
    }

    public void Dispose() => _dir.Dispose();

    /// <summary>Another farm invocation against the same job and images (a rerun, or a pull into another folder).</summary>
    private CliHarness AnotherRun()
    {
        var cli = new CliHarness();
        cli.Service.OnGetJob = _cli.Service.OnGetJob;
        cli.Service.OnDownload = (request, _) => Serve(request);
        return cli;
    }

    private string Out => Path.Combine(_dir.Path, "out");

    private void AddImage(uint index, string prompt, long seed, int size)
    {
        var bytes = new byte[size];
        new Random((int)index).NextBytes(bytes);
        _images.Add((new ImageInfo
        {
            Index = index, Prompt = prompt, NegativePrompt = "blurry", Seed = seed,
            Sha256 = Convert.ToHexStringLower(SHA256.HashData(bytes)), SizeBytes = (ulong)size,
        }, bytes));
    }

    private async IAsyncEnumerable<ResultChunk> Serve(DownloadResultsRequest request, int failAfterImages = int.MaxValue, Func<uint, byte[], byte[]>? tamper = null)
    {
        var sent = 0;
        foreach (var (info, bytes) in _images.Where(i => _cli.Service.Wants(request, i.Info.Index)))
        {
            if (sent++ == failAfterImages)
            {
                // Die in the middle of an image: header and half its bytes, then the transport fails.
                yield return new ResultChunk { Image = info, Data = ByteString.CopyFrom(bytes, 0, bytes.Length / 2) };
                throw new RpcException(new Status(StatusCode.Unavailable, "connection reset"));
            }

            var payload = tamper?.Invoke(info.Index, bytes) ?? bytes;
            yield return new ResultChunk { Image = info };
            for (var offset = 0; offset < payload.Length; offset += 16_384)
            {
                await Task.Yield();
                yield return new ResultChunk { Data = ByteString.CopyFrom(payload, offset, Math.Min(16_384, payload.Length - offset)) };
            }
        }
    }

    private Dictionary<string, string> Snapshot() =>
        Directory.EnumerateFiles(Out).ToDictionary(f => Path.GetFileName(f)!, f => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(f))));

    [Fact]
    public async Task PullWritesVerifiedFilesWithPredictableNamesAndAManifest()
    {
        var code = await _cli.RunAsync("pull", "J", "--out", Out);

        Assert.Equal(0, code);
        Assert.Equal(
            ["00000-11-a-red-fox.png", "00001-12-escape-attempt.png", "00002-13-a-blue-whale.png", "manifest.jsonl"],
            Directory.EnumerateFiles(Out).Select(Path.GetFileName).Order());
        Assert.Equal(_images[2].Bytes, File.ReadAllBytes(Path.Combine(Out, "00002-13-a-blue-whale.png")));
        var manifest = File.ReadAllLines(Path.Combine(Out, "manifest.jsonl"));
        Assert.Equal(3, manifest.Length);
        Assert.Equal(
            $"{{\"index\":1,\"prompt\":\"../../escape attempt\",\"negative_prompt\":\"blurry\",\"seed\":12,\"file\":\"00001-12-escape-attempt.png\",\"sha256\":\"{_images[1].Info.Sha256}\",\"job\":\"J\"}}",
            manifest[1]);
        Assert.Equal(Path.GetFullPath(Out), _cli.OutLines.Last());
        Assert.False(File.Exists(Path.Combine(_dir.Path, "escape-attempt.png")));
    }

    [Fact]
    public async Task ASecondPullSkipsVerifiedImagesAndSendsTheirIndices()
    {
        await _cli.RunAsync("pull", "J", "--out", Out);
        var before = Snapshot();

        var again = AnotherRun();
        var code = await again.RunAsync("pull", "J", "--out", Out);

        Assert.Equal(0, code);
        Assert.Equal([0u, 1u, 2u], again.Service.DownloadRequests.Single().SkipIndices.Order());
        Assert.Equal(before, Snapshot());
    }

    [Fact]
    public async Task AKilledPullResumesToIdenticalFiles()
    {
        // Reference: one clean pull into another folder.
        var reference = AnotherRun();
        var referenceDir = Path.Combine(_dir.Path, "reference");
        await reference.RunAsync("pull", "J", "--out", referenceDir);

        // First run: one image arrives, then every stream dies mid-image, so the pull gives up with a .part behind.
        _cli.Service.OnDownload = (request, call) => Serve(request, failAfterImages: call == 0 ? 1 : 0);
        var code = await _cli.RunAsync("pull", "J", "--out", Out);
        Assert.Equal(3, code);
        Assert.Single(File.ReadAllLines(Path.Combine(Out, "manifest.jsonl")));
        Assert.DoesNotContain(Directory.EnumerateFiles(Out), f => f.EndsWith(".part"));

        var rerun = AnotherRun();
        Assert.Equal(0, await rerun.RunAsync("pull", "J", "--out", Out));

        Assert.Equal(
            Directory.EnumerateFiles(referenceDir).ToDictionary(f => Path.GetFileName(f)!, f => File.ReadAllText(f)),
            Directory.EnumerateFiles(Out).ToDictionary(f => Path.GetFileName(f)!, f => File.ReadAllText(f)));
    }

    [Fact]
    public async Task ParallelStreamsAskTheCoordinatorForTheirPartitionListingOnlyWhatTheyHaveOfIt()
    {
        Assert.Equal(0, await _cli.RunAsync("pull", "J", "--out", Out, "--parallel", "1"));
        foreach (var index in new[] { "00001-", "00002-" })
            File.Delete(Directory.EnumerateFiles(Out, index + "*").Single());
        var again = AnotherRun();

        Assert.Equal(0, await again.RunAsync("pull", "J", "--out", Out, "--parallel", "8"));

        // Two images missing, so two streams: partition 0 holds images 0 and 2, partition 1 image 1. Each skip list
        // holds only what the folder has of its own partition (image 0), not the other partition's indices.
        var requests = again.Service.DownloadRequests.OrderBy(r => r.Partition).ToList();
        Assert.Equal([0u, 1u], requests.Select(r => r.Partition));
        Assert.All(requests, r => Assert.Equal(2u, r.PartitionCount));
        Assert.Equal([[0u], []], requests.Select(r => r.SkipIndices.ToArray()));
        Assert.Equal(3, Directory.EnumerateFiles(Out, "*.png").Count());
    }

    [Fact]
    public async Task ACoordinatorThatIgnoresPartitionsIsAskedAgainWithSkipListsAndEachImageArrivesOnce()
    {
        _cli.Service.HonoursPartitions = false; // no "farm-partitioned" header, and it would send every stream everything

        var code = await _cli.RunAsync("pull", "J", "--out", Out, "--parallel", "3", "--json");

        Assert.Equal(0, code);
        var requests = _cli.Service.DownloadRequests;
        Assert.Equal(6, requests.Count);
        var legacy = requests.Where(r => r.PartitionCount == 0).ToList();
        Assert.Equal(3, legacy.Count);
        // Each legacy stream skips the other two partitions' images: together every image once.
        Assert.Equal([0u, 1u, 2u], legacy.SelectMany(r => _images.Select(i => i.Info.Index).Where(i => _cli.Service.Wants(r, i))).Order());
        Assert.Contains("\"downloaded\":3,\"skipped\":0,\"failed\":0", _cli.Out.ToString());
        Assert.Equal(3, Directory.EnumerateFiles(Out, "*.png").Count());
    }

    [Fact]
    public async Task ADroppedDownloadStreamIsResumedWithinOnePull()
    {
        _cli.Service.OnDownload = (request, call) => call == 0 ? Serve(request, failAfterImages: 1) : Serve(request);

        var code = await _cli.RunAsync("pull", "J", "--out", Out, "--parallel", "1");

        Assert.Equal(0, code);
        Assert.Equal([0u], _cli.Service.DownloadRequests[1].SkipIndices);
        Assert.Equal(4, Directory.EnumerateFiles(Out).Count());
    }

    [Fact]
    public async Task AStreamThatKeepsBreakingIsResumedWithDoublingWaitsThenTheErrorEndsThePull()
    {
        _cli.Service.OnDownload = (request, _) => Serve(request, failAfterImages: 0);

        var code = await _cli.RunAsync("pull", "J", "--out", Out, "--parallel", "1");

        Assert.Equal(ExitCodes.Unreachable, code);
        Assert.Equal(5, _cli.Service.DownloadRequests.Count); // ResultStreams.MaxStreamAttempts
        Assert.Equal(
            ["0.25", "0.5", "1", "2"],
            _cli.ErrorLines.Where(l => l.StartsWith("download interrupted", StringComparison.Ordinal)).Select(l => l.Split("resuming in ")[1].TrimEnd('s')));
        Assert.Contains("download interrupted (connection reset (Unavailable))", _cli.Error.ToString());
        Assert.Empty(Directory.EnumerateFiles(Out, "*.part"));
    }

    [Fact]
    public async Task AnImageFailingItsChecksumIsNotKeptAndTheExitCodeIsOne()
    {
        _cli.Service.OnDownload = (request, _) => Serve(request, tamper: (index, bytes) =>
        {
            if (index != 2)
            {
                return bytes;
            }

            var copy = (byte[])bytes.Clone();
            copy[5] ^= 0xff;
            return copy;
        });

        var code = await _cli.RunAsync("pull", "J", "--out", Out);

        Assert.Equal(1, code);
        Assert.False(File.Exists(Path.Combine(Out, "00002-13-a-blue-whale.png")));
        Assert.Contains("image 2: sha256 mismatch", _cli.Error.ToString());
        Assert.Equal(2, File.ReadAllLines(Path.Combine(Out, "manifest.jsonl")).Length);
    }

    [Fact]
    public async Task ACorruptedLocalFileIsDownloadedAgain()
    {
        await _cli.RunAsync("pull", "J", "--out", Out);
        File.WriteAllText(Path.Combine(Out, "00000-11-a-red-fox.png"), "garbage");

        var again = AnotherRun();
        await again.RunAsync("pull", "J", "--out", Out);

        Assert.Equal([1u, 2u], again.Service.DownloadRequests.Single().SkipIndices.Order());
        Assert.Equal(_images[0].Bytes, File.ReadAllBytes(Path.Combine(Out, "00000-11-a-red-fox.png")));
    }

    [Fact]
    public async Task PullingAnotherJobIntoAFolderOfOneIsRefusedBeforeAnythingIsWritten()
    {
        Assert.Equal(0, await _cli.RunAsync("pull", "J", "--out", Out));
        var before = Snapshot();

        // Job K's first images have J's indices (and here J's very prompts and seeds): they must not pass for K's.
        var other = AnotherRun();
        var code = await other.RunAsync("pull", "K", "--out", Out);

        Assert.Equal(2, code);
        Assert.Contains($"holds images of job J (see its manifest.jsonl); pull job K into another folder", other.ErrorLines.Single());
        Assert.Empty(other.Service.DownloadRequests);
        Assert.Equal(before, Snapshot());
    }

    [Fact]
    public async Task AManifestWrittenBeforeEntriesNamedTheirJobIsFetchedAgainOnceSinceWhoseImagesItListsIsUnknown()
    {
        Assert.Equal(0, await _cli.RunAsync("pull", "J", "--out", Out));
        var before = Snapshot();
        var manifest = Path.Combine(Out, "manifest.jsonl");
        var legacy = File.ReadAllLines(manifest).Select(l => l.Replace(",\"job\":\"J\"", "")).ToArray();
        File.WriteAllLines(manifest, legacy);

        // Another job pulled into that folder: nothing of it is taken for the new job's.
        var other = AnotherRun();
        Assert.Equal(0, await other.RunAsync("pull", "K", "--out", Out));
        Assert.All(other.Service.DownloadRequests, r => Assert.Empty(r.SkipIndices));
        Assert.All(File.ReadAllLines(manifest), l => Assert.EndsWith(",\"job\":\"K\"}", l));

        // The same job: fetched again to the same files, and from then on resumable as any folder.
        File.WriteAllLines(manifest, legacy);
        var again = AnotherRun();
        Assert.Equal(0, await again.RunAsync("pull", "J", "--out", Out));
        Assert.All(again.Service.DownloadRequests, r => Assert.Empty(r.SkipIndices));
        Assert.Equal(before, Snapshot());
    }

    [Fact]
    public async Task AManifestEntryPointingOutsideTheFolderIsIgnored()
    {
        Directory.CreateDirectory(Out);
        var outside = Path.Combine(_dir.Path, "victim.png");
        File.WriteAllText(outside, "keep me");
        File.WriteAllText(Path.Combine(Out, "manifest.jsonl"),
            $"{{\"index\":0,\"prompt\":\"x\",\"negative_prompt\":\"\",\"seed\":1,\"file\":\"../victim.png\",\"sha256\":\"{Convert.ToHexStringLower(SHA256.HashData("keep me"u8.ToArray()))}\"}}\n");

        await _cli.RunAsync("pull", "J", "--out", Out, "--parallel", "1");

        Assert.Empty(_cli.Service.DownloadRequests.Single().SkipIndices);
        Assert.Equal("keep me", File.ReadAllText(outside));
        Assert.DoesNotContain("victim", File.ReadAllText(Path.Combine(Out, "manifest.jsonl")));
    }

    [Fact]
    public async Task PullJsonPrintsOneSummaryObject()
    {
        var code = await _cli.RunAsync("pull", "J", "--out", Out, "--json");

        Assert.Equal(0, code);
        var line = Assert.Single(_cli.OutLines);
        Assert.Contains("\"downloaded\":3,\"skipped\":0,\"failed\":0", line);
    }

    [Fact]
    public async Task PullOfAJobThatFinishedWithFailuresExitsOne()
    {
        _cli.Service.OnGetJob = r => new JobStatus { JobId = r.JobId, State = JobState.Failed, ImageCount = 4, ImagesDone = 3, ImagesFailed = 1 };

        Assert.Equal(1, await _cli.RunAsync("pull", "J", "--out", Out));
        Assert.Equal(4, Directory.EnumerateFiles(Out).Count());
    }

    [Fact]
    public async Task ContactSheetIsWrittenBesideTheImagesAndUndecodableOnesAreCounted()
    {
        var code = await _cli.RunAsync("pull", "J", "--out", Out, "--contact-sheet");

        Assert.Equal(0, code);
        using var sheet = SkiaSharp.SKBitmap.Decode(Path.Combine(Out, "contact-sheet.png"));
        var layout = ContactSheetLayout.For(3);
        Assert.Equal((layout.Width, layout.Height), (sheet.Width, sheet.Height));
        Assert.Contains("contact-sheet.png: 3 images, 2x2 grid; 3 could not be decoded", _cli.Error.ToString());
    }

    [Fact]
    public async Task PullRequiresOut()
    {
        Assert.Equal(2, await _cli.RunAsync("pull", "J"));
        Assert.Contains("--out", _cli.Error.ToString());
    }
}
