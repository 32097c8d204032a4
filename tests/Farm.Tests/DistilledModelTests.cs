using RenderFarm.Client;
using RenderFarm.Diffusion;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.ModelBuilder;
using RenderFarm.Protocol;
using RenderFarm.Worker;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// LCM and Turbo models through the farm, from `farm submit`: the worker reports what their directories declare, the
/// coordinator fills the settings the submission left to the model, the worker renders them and the PNG records them.
/// A farm of its own (one worker serving tiny, tiny-lcm and tiny-turbo).
/// </summary>
public sealed class DistilledModelTests(DistilledModelTests.DistilledFarm fixture) : IClassFixture<DistilledModelTests.DistilledFarm>
{
    public sealed class DistilledFarm : IAsyncLifetime
    {
        public FarmCluster Cluster { get; private set; } = null!;

        public string Lcm => Path.Combine(Cluster.Root, "tiny-lcm");

        public async Task InitializeAsync()
        {
            Cluster = await FarmCluster.StartAsync(workers: 0);
            ModelPresets.Write("tiny-lcm", Lcm);
            ModelPresets.Write("tiny-turbo", Path.Combine(Cluster.Root, "tiny-turbo"));
            await Cluster.StartWorkerAsync("distilled-worker", s =>
            {
                s["Farm:Models:tiny-lcm"] = Lcm;
                s["Farm:Models:tiny-turbo"] = Path.Combine(Cluster.Root, "tiny-turbo");
            });
        }

        public async Task DisposeAsync() => await Cluster.DisposeAsync();
    }

    private FarmCluster Farm => fixture.Cluster;

    private static byte[] Pixels(byte[] png) => RenderFarm.Imaging.ImageDecoder.Decode(png, grey: false, long.MaxValue, "png").Pixels;

    private async Task<(int Exit, string Out, string Err)> FarmAsync(params string[] args)
    {
        var stdout = new StringWriter();
        var err = new StringWriter();
        var exit = await FarmCli.RunAsync(["--coordinator", Farm.CoordinatorUrl, .. args], stdout, err, CancellationToken.None);
        return (exit, stdout.ToString(), err.ToString());
    }

    private async Task<List<string>> SubmitAndReadParametersAsync(string fileName, string[] lines, params string[] flags)
    {
        var file = Path.Combine(Farm.Root, fileName);
        await File.WriteAllLinesAsync(file, lines);
        var submit = await FarmAsync(["submit", file, "--size", "64x64", "--seed", "5", "--watch", .. flags]);
        Assert.True(submit.Exit == 0, submit.Err);
        var jobId = submit.Out.Trim().Split('\n')[^1].Trim();
        var images = (await Farm.Jobs.DownloadAllAsync(jobId)).OrderBy(i => i.Info.Index).ToList();
        Assert.Equal(lines.Length, images.Count);
        return images.Select(i => PngMetadata.Read(i.Png).Text["parameters"]).ToList();
    }

    [Fact]
    public async Task SettingsLeftToTheModelRenderWithItsDefaultsAndAPromptsOwnSettingsWin()
    {
        var parameters = await SubmitAndReadParametersAsync("distilled.jsonl",
        [
            """{"prompt": "a boat at dawn", "model": "tiny-lcm"}""",
            """{"prompt": "a boat at dawn", "model": "tiny-lcm", "guidance": 2}""",
            """{"prompt": "a boat at dawn", "model": "tiny-turbo"}""",
            """{"prompt": "a boat at dawn", "model": "tiny-turbo", "steps": 2}""",
            """{"prompt": "a boat at dawn"}""",
        ]);

        Assert.Contains("Steps: 4, Sampler: LCM, CFG scale: 8.5, Seed: 5, Size: 64x64, Model: tiny-lcm", parameters[0]);
        Assert.Contains("Steps: 4, Sampler: LCM, CFG scale: 2, ", parameters[1]);
        Assert.Contains("Steps: 1, Sampler: Euler, CFG scale: 0, Seed: 5, Size: 64x64, Model: tiny-turbo", parameters[2]);
        Assert.Contains("Steps: 2, Sampler: Euler, CFG scale: 0, ", parameters[3]);
        // The job's own model (tiny, an ordinary one) keeps the client's defaults.
        Assert.Contains("Steps: 20, Sampler: Euler, CFG scale: 7.5, Seed: 5, Size: 64x64, Model: tiny", parameters[4]);
    }

    [Fact]
    public async Task FlagsOverrideWhatTheModelWouldChoose()
    {
        var parameters = await SubmitAndReadParametersAsync("override.txt", ["a boat at dawn"],
            "--model", "tiny-turbo", "--steps", "3", "--guidance", "1.5", "--scheduler", "euler_a");
        Assert.Contains("Steps: 3, Sampler: Euler a, CFG scale: 1.5, ", Assert.Single(parameters));
    }

    [Fact]
    public async Task AnLcmImageFromTheFarmIsWhatTheWorkersPipelineRendersAndTheWorkerReportsItsDefaults()
    {
        var workers = await Farm.Jobs.ListWorkersAsync(new ListWorkersRequest());
        var reported = workers.Workers.Single(w => w.WorkerId == "distilled-worker").SamplingDefaults.ToDictionary(d => d.Model);
        Assert.Equal(["tiny-lcm", "tiny-turbo"], reported.Keys.Order());
        Assert.Equal(("lcm", 4u, 8.5f), (reported["tiny-lcm"].Scheduler, reported["tiny-lcm"].Steps, reported["tiny-lcm"].GuidanceScale));
        Assert.Equal(("euler", 1u, 0f), (reported["tiny-turbo"].Scheduler, reported["tiny-turbo"].Steps, reported["tiny-turbo"].GuidanceScale));

        var header = new JobHeader
        {
            Params = new GenerationParams { Model = "tiny-lcm", Width = 64, Height = 64, Steps = 20, GuidanceScale = 7.5f, Scheduler = "euler" },
            Seeds = { 9 },
            LeftToModel = new LeftToModel { Steps = true, GuidanceScale = true, Scheduler = true },
        };
        var submitted = await Farm.SubmitAsync(header, [new PromptItem { Prompt = "a lighthouse", NegativePrompt = "fog" }]);
        Assert.Equal(JobState.Completed, (await Farm.WatchToEndAsync(submitted.JobId, TimeSpan.FromMinutes(2)))[^1].JobFinished.State);
        var image = Assert.Single(await Farm.Jobs.DownloadAllAsync(submitted.JobId));

        using var pipeline = StableDiffusionPipeline.Load(fixture.Lcm, new WorkerOptions().ToDiffusionOptions());
        var direct = await pipeline.GenerateAsync(new GenerationRequest([new ImagePrompt("a lighthouse", "fog", 9)], 64, 64, 4, 8.5f, "lcm", "tiny-lcm"));
        Assert.Equal(Pixels(direct[0].Png), Pixels(image.Png));
    }
}
