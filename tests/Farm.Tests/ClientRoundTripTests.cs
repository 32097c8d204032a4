using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using RenderFarm.Client;
using RenderFarm.Farm.Tests.Infrastructure;

namespace RenderFarm.Farm.Tests;

/// <summary>The `farm` CLI, in-process, against the live coordinator, Redis and workers of the farm collection.</summary>
[Collection("farm")]
public sealed class ClientRoundTripTests(FarmFixture fixture) : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("farm-cli-").FullName;

    private async Task<(int Exit, string Out, string Err)> FarmAsync(string[] args, CancellationToken cancellationToken = default,
        Func<StringWriter>? writers = null)
    {
        var stdout = writers?.Invoke() ?? new StringWriter();
        var err = writers?.Invoke() ?? new StringWriter();
        var exit = await FarmCli.RunAsync(["--coordinator", fixture.Cluster.CoordinatorUrl, .. args], stdout, err, cancellationToken);
        return (exit, stdout.ToString(), err.ToString() ?? "");
    }

    [Fact]
    public async Task SubmitWatchAndPullRenderEveryImageAndPullResumesToIdenticalFiles()
    {
        var prompts = Path.Combine(_directory, "prompts.txt");
        await File.WriteAllLinesAsync(prompts, ["# a comment", "a castle on a hill", "", "a ship in a bottle", "a fox in the snow"]);
        var output = Path.Combine(_directory, "out");

        var submit = await FarmAsync(["submit", prompts, "--seeds", "3,4", "--size", "64x64", "--steps", "4", "--watch", "--out", output]);

        Assert.True(submit.Exit == 0, submit.Err);
        var jobId = submit.Out.Trim().Split('\n')[^1].Trim();
        var files = Directory.GetFiles(output, "*.png").Order().ToArray();
        Assert.Equal(6, files.Length);
        Assert.Contains(files, f => Path.GetFileName(f) == "00000-3-a-castle-on-a-hill.png");
        var hashes = files.ToDictionary(f => Path.GetFileName(f)!, f => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(f))));
        var manifest = (await File.ReadAllLinesAsync(Path.Combine(output, "manifest.jsonl"))).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(6, manifest.Count);
        Assert.All(manifest, m => Assert.Equal(hashes[m.GetProperty("file").GetString()!], m.GetProperty("sha256").GetString()));

        var status = await FarmAsync(["status", jobId, "--json"]);
        Assert.Equal(0, status.Exit);
        var json = JsonDocument.Parse(status.Out).RootElement;
        Assert.Equal("completed", json.GetProperty("state").GetString());
        Assert.Equal(6, json.GetProperty("images_done").GetInt32());
        Assert.Equal(jobId, json.GetProperty("job_id").GetString());

        // Damage the download: two files gone, one corrupted; then a pull killed after its first saved file.
        File.Delete(files[0]);
        File.Delete(files[3]);
        await File.WriteAllTextAsync(files[5], "not a png");
        using (var kill = new CancellationTokenSource())
        {
            var killed = await FarmAsync(["pull", jobId, "--out", output], kill.Token, () => new CancelOnWrite("saved", kill));
            Assert.NotEqual(0, killed.Exit);
        }
        var resumed = await FarmAsync(["pull", jobId, "--out", output]);

        Assert.True(resumed.Exit == 0, resumed.Err);
        var after = Directory.GetFiles(output, "*.png").ToDictionary(f => Path.GetFileName(f)!, f => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(f))));
        Assert.Equal(hashes.OrderBy(p => p.Key), after.OrderBy(p => p.Key));
        Assert.Empty(Directory.GetFiles(output, "*.part"));
    }

    [Fact]
    public async Task AnUnknownJobExitsWithNotFoundAndABadPromptFileNamesItsLine()
    {
        var status = await FarmAsync(["status", "zzzzzzzzzzzzzzzz"]);
        Assert.Equal(4, status.Exit);
        Assert.Contains("not found", status.Err);

        var bad = Path.Combine(_directory, "bad.jsonl");
        await File.WriteAllLinesAsync(bad, ["{\"prompt\": \"fine\"}", "{\"prompt\": "]);
        var submit = await FarmAsync(["submit", bad]);
        Assert.Equal(2, submit.Exit);
        Assert.Contains("bad.jsonl:2", submit.Err);
    }

    [Fact]
    public async Task JobsWorkersModelsAndCancelReportTheLiveFarmAsJson()
    {
        var prompts = Path.Combine(_directory, "one.txt");
        await File.WriteAllLinesAsync(prompts, ["a lone tree"]);
        var submit = await FarmAsync(["submit", prompts, "--size", "64x64", "--steps", "2", "--seed", "5", "--priority", "high", "--watch"]);
        Assert.True(submit.Exit == 0, submit.Err);
        var jobId = submit.Out.Trim().Split('\n')[^1].Trim();
        var status = JsonDocument.Parse((await FarmAsync(["status", jobId, "--json"])).Out).RootElement;
        Assert.Equal("high", status.GetProperty("priority").GetString());

        var jobs = JsonDocument.Parse((await FarmAsync(["jobs", "--state", "completed", "--json"])).Out).RootElement;
        Assert.Contains(jobs.EnumerateArray(), j => j.GetProperty("job_id").GetString() == jobId);
        Assert.All(jobs.EnumerateArray(), j => Assert.Equal("completed", j.GetProperty("state").GetString()));

        var workers = JsonDocument.Parse((await FarmAsync(["workers", "--json"])).Out).RootElement.EnumerateArray()
            .ToDictionary(w => w.GetProperty("worker_id").GetString()!);
        Assert.Contains("worker-1", workers.Keys);
        Assert.Contains("worker-2", workers.Keys);
        Assert.Equal(FarmCluster.Model, workers["worker-1"].GetProperty("models")[0].GetString());
        Assert.NotEqual("offline", workers["worker-1"].GetProperty("state").GetString());
        Assert.Equal($"cpu x{Environment.ProcessorCount}", workers["worker-1"].GetProperty("device").GetString());
        var total = workers["worker-1"].GetProperty("memory_bytes").GetUInt64();
        var used = workers["worker-1"].GetProperty("memory_used_bytes").GetUInt64();
        Assert.True(total > 0);
        // In use, as measured after its model load (the process's resident memory on the CPU): some, and under the total.
        Assert.InRange(used, 1UL, total);
        var table = (await FarmAsync(["workers"])).Out;
        // MODELS, then HELD: what it has loaded and the memory that takes; DEVICE with memory in use of the total.
        Assert.Matches($@"worker-1 +\S+ +{FarmCluster.Model} +{FarmCluster.Model} \([^)]+\) +cpu cpu x{Environment.ProcessorCount} [0-9.]+/[0-9.]+ GiB ", table);

        var models = JsonDocument.Parse((await FarmAsync(["models", "--json"])).Out).RootElement;
        var tiny = Assert.Single(models.EnumerateArray(), m => m.GetProperty("name").GetString() == FarmCluster.Model);
        Assert.Equal(2, tiny.GetProperty("workers").GetInt32());

        // Cancelling a finished job changes nothing.
        var cancel = await FarmAsync(["cancel", jobId, "--json"]);
        Assert.Equal(0, cancel.Exit);
        Assert.Equal("completed", JsonDocument.Parse(cancel.Out).RootElement.GetProperty("state").GetString());
        Assert.Equal(2, (await FarmAsync(["jobs", "--state", "bogus"])).Exit);
    }

    [Fact]
    public async Task PerPromptSettingsFromAJsonLinesFileRenderEachImageWithItsOwnSettings()
    {
        var prompts = Path.Combine(_directory, "mixed.jsonl");
        await File.WriteAllLinesAsync(prompts,
        [
            "{\"prompt\": \"a default one\"}",
            "{\"prompt\": \"a wide one\", \"size\": \"96x64\", \"steps\": 3, \"scheduler\": \"ddim\"}",
            "{\"prompt\": \"another default\", \"seed\": 77}",
        ]);
        var output = Path.Combine(_directory, "mixed");

        var submit = await FarmAsync(["submit", prompts, "--size", "64x64", "--steps", "4", "--seed", "5", "--watch", "--out", output]);

        Assert.True(submit.Exit == 0, submit.Err);
        var images = Directory.GetFiles(output, "*.png").Order().Select(f => RenderFarm.Diffusion.PngMetadata.Read(File.ReadAllBytes(f))).ToList();
        Assert.Equal(3, images.Count);
        Assert.Equal((64, 64), (images[0].Width, images[0].Height));
        Assert.Contains("Steps: 4, Sampler: Euler,", images[0].Text["parameters"]);
        Assert.Equal((96, 64), (images[1].Width, images[1].Height));
        Assert.Contains("Steps: 3, Sampler: DDIM,", images[1].Text["parameters"]);
        Assert.Contains("Seed: 77,", images[2].Text["parameters"]);
        // The two default-settings images share a shard; the wide one has its own.
        var jobId = submit.Out.Trim().Split('\n')[^1].Trim();
        Assert.Equal(2, JsonDocument.Parse((await FarmAsync(["status", jobId, "--json"])).Out).RootElement.GetProperty("shard_count").GetInt32());
    }

    public void Dispose()
    {
        try { Directory.Delete(_directory, recursive: true); } catch (IOException) { }
    }

    /// <summary>Cancels the CLI the moment it writes a line containing <paramref name="marker"/>: a kill mid-pull.</summary>
    private sealed class CancelOnWrite(string marker, CancellationTokenSource cancel) : StringWriter
    {
        public override Encoding Encoding => Encoding.UTF8;
        public override void WriteLine(string? value)
        {
            base.WriteLine(value);
            if (value?.Contains(marker) == true) cancel.Cancel();
        }
        public override void Write(string? value)
        {
            base.Write(value);
            if (value?.Contains(marker) == true) cancel.Cancel();
        }
    }
}
