using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using RenderFarm.Client;
using RenderFarm.Client.Pull;
using RenderFarm.Coordinator.Storage;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;
using RenderFarm.FarmState;

namespace RenderFarm.Farm.Tests.Storage;

/// <summary>
/// <c>farm pull</c>, in-process, against a whole farm whose results live in s3rver: parallel GETs of the presigned
/// URLs the coordinator hands out must leave exactly what the byte stream through the coordinator leaves.
/// </summary>
public sealed class S3PullTests : IDisposable
{
    private const string Bucket = "pull-results";
    private const string Prefix = "renders";
    private const int Images = 40;
    private readonly string _directory = Directory.CreateTempSubdirectory("farm-s3-pull-").FullName;

    [S3Fact]
    public async Task ParallelPresignedPullMatchesAStreamPullAndAKilledPullResumesToIdenticalFiles()
    {
        await using var s3 = await S3TestServer.StartAsync("s3rver");
        using (var admin = new S3ResultStore(new S3Location(Bucket, Prefix), s3.Options()))
            await admin.CreateBucketAsync(CancellationToken.None);
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 8, configure: s => s3.Configure(s, Bucket, Prefix));
        await farm.StartWorkerAsync("synthetic-1", s => s[$"Farm:Models:{FarmCluster.Model}"] = "synthetic:0");

        var header = new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7.5f } };
        header.Seeds.AddRange([1, 2]);
        var prompts = Enumerable.Range(0, Images / 2).Select(i => new PromptItem { Prompt = $"a pulled picture number {i}" });
        var job = (await farm.SubmitAsync(header, prompts)).JobId;
        Assert.Equal(JobState.Completed, (await farm.WatchToEndAsync(job, TimeSpan.FromMinutes(2)))[^1].JobFinished.State);

        // Each result is recorded with its size, so handing out a URL needs no HEAD; a record from before sizes were
        // kept (sha256 alone) still works: the store is asked for that one.
        var records = await farm.Redis.HashGetAllAsync(FarmKeys.JobResults(job));
        Assert.Equal(Images, records.Length);
        using (var reader = new S3ResultStore(new S3Location(Bucket, Prefix), s3.Options()))
        {
            foreach (var record in records.Take(3))
            {
                var (sha256, size) = ((string)record.Value!).Split(':') is [var sha, var bytes] ? (sha, long.Parse(bytes)) : throw new Xunit.Sdk.XunitException($"no size in '{record.Value}'");
                await using var object_ = await reader.OpenReadAsync(job, uint.Parse((string)record.Name!), CancellationToken.None);
                Assert.Equal(object_!.Length, size);
                Assert.Equal(64, sha256.Length);
            }
        }
        var legacy = records[0];
        await farm.Redis.HashSetAsync(FarmKeys.JobResults(job), legacy.Name, ((string)legacy.Value!).Split(':')[0]);

        // Reference: every byte through the coordinator, one stream.
        var streamed = Path.Combine(_directory, "streamed");
        var stream = await FarmAsync(farm, ["pull", job, "--out", streamed, "--via-coordinator", "--json"]);
        Assert.True(stream.Exit == 0, stream.Err);
        Assert.Equal(0, Summary(stream.Out).GetProperty("via_urls").GetInt32());
        Assert.Equal(Images + 1, Directory.GetFiles(streamed).Length);

        // Presigned URLs, 8 GETs at a time, straight from the store.
        var parallel = Path.Combine(_directory, "parallel");
        var pulled = await FarmAsync(farm, ["pull", job, "--out", parallel, "--parallel", "8", "--json"]);
        Assert.True(pulled.Exit == 0, pulled.Err);
        var summary = Summary(pulled.Out);
        Assert.Equal(Images, summary.GetProperty("downloaded").GetInt32());
        Assert.Equal(Images, summary.GetProperty("via_urls").GetInt32());
        Assert.Equal(Snapshot(streamed), Snapshot(parallel));

        // A presigned pull killed after its 5th file, then run again: the same files and manifest, nothing left over.
        var resumed = Path.Combine(_directory, "resumed");
        using (var kill = new CancellationTokenSource())
        {
            var killed = await FarmAsync(farm, ["pull", job, "--out", resumed, "--parallel", "4"], kill.Token, () => new CancelOnSaved(5, kill));
            Assert.Equal(ExitCodes.Interrupted, killed.Exit);
        }
        Assert.InRange(File.ReadAllLines(Path.Combine(resumed, ResultManifest.FileName)).Length, 5, Images - 1);
        var again = await FarmAsync(farm, ["pull", job, "--out", resumed, "--json"]);
        Assert.True(again.Exit == 0, again.Err);
        Assert.InRange(Summary(again.Out).GetProperty("skipped").GetInt32(), 5, Images - 1);
        Assert.Equal(Snapshot(streamed), Snapshot(resumed));
    }

    private static async Task<(int Exit, string Out, string Err)> FarmAsync(
        FarmCluster farm, string[] args, CancellationToken cancellationToken = default, Func<StringWriter>? stdout = null)
    {
        var output = stdout?.Invoke() ?? new StringWriter();
        var error = new StringWriter();
        var exit = await FarmCli.RunAsync(["--coordinator", farm.CoordinatorUrl, .. args], output, error, cancellationToken);
        return (exit, output.ToString(), error.ToString());
    }

    private static JsonElement Summary(string stdout) => JsonDocument.Parse(stdout).RootElement;

    /// <summary>Every file of a folder (images and manifest) by name → sha256.</summary>
    private static SortedDictionary<string, string> Snapshot(string folder) =>
        new(Directory.GetFiles(folder).ToDictionary(f => Path.GetFileName(f), f => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(f)))),
            StringComparer.Ordinal);

    public void Dispose()
    {
        try { Directory.Delete(_directory, recursive: true); } catch (IOException) { }
    }

    /// <summary>Stdout that cancels the CLI at its Nth <c>saved</c> line: a pull killed midway.</summary>
    private sealed class CancelOnSaved(int saves, CancellationTokenSource cancel) : StringWriter
    {
        private int _saved;

        public override Encoding Encoding => Encoding.UTF8;

        public override void WriteLine(string? value)
        {
            base.WriteLine(value);
            if (value?.StartsWith("saved ", StringComparison.Ordinal) == true && Interlocked.Increment(ref _saved) == saves)
                cancel.Cancel();
        }
    }
}
