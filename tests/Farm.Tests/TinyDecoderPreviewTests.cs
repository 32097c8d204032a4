using RenderFarm.Client;
using RenderFarm.Diffusion;
using RenderFarm.FarmState;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.ModelBuilder;
using RenderFarm.Protocol;
using RenderFarm.Worker;
using StackExchange.Redis;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// A worker whose model has a tiny autoencoder decoder (tiny-taesd: vae_decoder_tiny/) sends image-size previews; the
/// coordinator accepts and keeps them, and a watcher that asks for previews (the dashboard's job page, farm watch
/// --previews) receives them, and they leave Redis with the job. The render is held at a preview, so the previews are read
/// while it runs.
/// </summary>
public sealed class TinyDecoderPreviewTests(TinyDecoderPreviewTests.TaesdFarm fixture) : IClassFixture<TinyDecoderPreviewTests.TaesdFarm>
{
    public sealed class TaesdFarm : IAsyncLifetime
    {
        public FarmCluster Cluster { get; private set; } = null!;
        public ControlledRenderer Renderer { get; private set; } = null!;

        public async Task InitializeAsync()
        {
            // Every preview stored: the default Farm:PreviewIntervalMilliseconds (250) would drop a step's preview that
            // came within 250 ms of the last, and a test that holds the render at the next step's would wait forever.
            Cluster = await FarmCluster.StartAsync(workers: 0, configure: s => s["Farm:PreviewIntervalMilliseconds"] = "0");
            var model = Path.Combine(Cluster.Root, "tiny-taesd");
            ModelPresets.Write("tiny-taesd", model);
            Renderer = new ControlledRenderer(new PipelineRenderer(StableDiffusionPipeline.Load(model)));
            await Cluster.StartWorkerAsync("taesd-worker", configure: null,
                services => services.AddSingleton(new ModelCatalog(new Dictionary<string, IShardRenderer> { [FarmCluster.Model] = Renderer })));
        }

        public async Task DisposeAsync()
        {
            Renderer.ReleaseHold();
            await Cluster.DisposeAsync();
        }
    }

    [Fact]
    public async Task WatchersThatAskForPreviewsReceiveTheTinyDecodersImageSizedPreviews()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var hold = fixture.Renderer.HoldAtNextPreview();
        SubmitJobResponse? job = null;
        try
        {
            job = await SubmitAsync("a lighthouse at dusk");
            await hold.Held.WaitAsync(cts.Token);

            using var watch = fixture.Cluster.Jobs.WatchJob(new WatchJobRequest { JobId = job.JobId, Previews = true }, cancellationToken: cts.Token);
            var previews = new Dictionary<uint, ImagePreview>();
            while (previews.Count < 2 && await watch.ResponseStream.MoveNext(cts.Token))
                if (watch.ResponseStream.Current.Preview is { } preview) previews[preview.Index] = preview;

            Assert.Equal([0u, 1u], previews.Keys.Order());
            Assert.All(previews.Values, p =>
            {
                // The image's size, where the latent approximation would be 8x6.
                Assert.Equal((64u, 48u), (p.Width, p.Height));
                var header = RenderFarm.Imaging.ImageHeader.Read(p.Png.Span)!.Value;
                Assert.Equal((64, 48), (header.Width, header.Height));
            });
        }
        finally
        {
            hold.Release();
        }
        // To its end: a render still going would take the next test's hold at its next preview.
        if (job is not null) await fixture.Cluster.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(2));
    }

    private IDatabase Redis => fixture.Cluster.Redis;

    private Task<SubmitJobResponse> SubmitAsync(string prompt) =>
        fixture.Cluster.SubmitAsync(new JobHeader
        {
            Params = new GenerationParams { Width = 64, Height = 48, Steps = 3, GuidanceScale = 7f },
            Seeds = { 1, 2 },
            PreviewEvery = 1,
        }, [new PromptItem { Prompt = prompt }]);

    /// <summary>The preview of the image the coordinator holds in Redis now, or null.</summary>
    private async Task<ImagePreview?> HeldPreviewAsync(string jobId, uint index) =>
        await Redis.HashGetAsync(FarmKeys.JobPreviews(jobId), index) is { IsNull: false } value ? ImagePreview.Parser.ParseFrom((byte[])value!) : null;

    /// <summary>
    /// Waits until the folder holds, for both images, the preview of <paramref name="step"/> that the coordinator holds
    /// (the render is held there, so it is each image's latest); returns the files' bytes.
    /// </summary>
    private async Task<byte[][]> FolderHoldsPreviewsOfStepAsync(string folder, string jobId, uint step)
    {
        var files = new byte[2][];
        await Eventually.HoldsAsync(async () =>
        {
            for (uint index = 0; index < 2; index++)
            {
                var path = Path.Combine(folder, $"{index:D5}.png");
                if (await HeldPreviewAsync(jobId, index) is not { } held || held.Step != step || !File.Exists(path)) return false;
                files[index] = await File.ReadAllBytesAsync(path);
                if (!held.Png.Span.SequenceEqual(files[index])) return false;
            }
            return true;
        }, $"the step-{step} previews of both images in {folder}");
        return files;
    }

    [Fact]
    public async Task FarmWatchPreviewsKeepsEachImagesLatestPreviewInTheFolderAndAWatcherThatDidNotAskGetsNone()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var folder = Path.Combine(fixture.Cluster.Root, $"previews-{Guid.NewGuid():N}");
        var hold = fixture.Renderer.HoldAtNextPreview();
        try
        {
            var job = await SubmitAsync("a harbour in fog");
            await hold.Held.WaitAsync(cts.Token);
            // Both watch the job from its first preview to its end: one without previews, and farm watch --previews DIR.
            var unasked = fixture.Cluster.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(2));
            var cli = FarmCli.RunAsync(["--coordinator", fixture.Cluster.CoordinatorUrl, "watch", job.JobId, "--plain", "--previews", folder],
                new StringWriter(), new StringWriter(), cts.Token);

            var first = await FolderHoldsPreviewsOfStepAsync(folder, job.JobId, step: 1);
            hold = fixture.Renderer.HoldAtNextPreviewAfter(hold);
            await hold.Held.WaitAsync(cts.Token);
            // The next step's previews replace the files: each image's latest, not one file per preview.
            var second = await FolderHoldsPreviewsOfStepAsync(folder, job.JobId, step: 2);
            Assert.All(Enumerable.Range(0, 2), i => Assert.False(first[i].AsSpan().SequenceEqual(second[i]), $"image {i}'s preview file was not replaced"));
            hold.Release();

            Assert.Equal(0, await cli.WaitAsync(cts.Token));
            Assert.Equal(["00000.png", "00001.png"], Directory.GetFiles(folder).Select(Path.GetFileName).Order());
            Assert.All(Directory.GetFiles(folder), f => Assert.Equal((64, 48), PngSize(File.ReadAllBytes(f))));
            var events = await unasked;
            Assert.Equal(JobState.Completed, events[^1].JobFinished.State);
            Assert.DoesNotContain(events, e => e.KindCase == JobEvent.KindOneofCase.Preview);
        }
        finally
        {
            hold.Release();
        }
    }

    [Fact]
    public async Task AJobsHeldPreviewsAreDroppedFromRedisWhenItFinishes()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        // A job that completes: its previews are held while it renders, and its keys are gone once it has finished.
        var hold = fixture.Renderer.HoldAtNextPreview();
        try
        {
            var job = await SubmitAsync("a lighthouse at dawn");
            await hold.Held.WaitAsync(cts.Token);
            await Eventually.HoldsAsync(async () => await Redis.HashLengthAsync(FarmKeys.JobPreviews(job.JobId)) == 2, "both images' previews held in Redis");
            Assert.True((long)await Redis.HashGetAsync(FarmKeys.JobPreviewSequence(job.JobId), RenderFarm.FarmState.Jobs.PreviewScripts.BytesField) > 0);
            hold.Release();
            await fixture.Cluster.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(2));
            // Dropped by the coordinator just after it records the last image (and its job's end).
            await Eventually.HoldsAsync(async () => !await Redis.KeyExistsAsync(FarmKeys.JobPreviews(job.JobId)) && !await Redis.KeyExistsAsync(FarmKeys.JobPreviewSequence(job.JobId)),
                "the completed job's preview keys deleted");
        }
        finally
        {
            hold.Release();
        }

        // A job cancelled while held at a preview: its keys are gone by the time the cancel returns.
        hold = fixture.Renderer.HoldAtNextPreview();
        try
        {
            var job = await SubmitAsync("a lighthouse cancelled");
            await hold.Held.WaitAsync(cts.Token);
            await Eventually.HoldsAsync(async () => await Redis.HashLengthAsync(FarmKeys.JobPreviews(job.JobId)) == 2, "both images' previews held in Redis");
            await fixture.Cluster.Jobs.CancelJobAsync(new CancelJobRequest { JobId = job.JobId }, cancellationToken: cts.Token);
            Assert.False(await Redis.KeyExistsAsync(FarmKeys.JobPreviews(job.JobId)));
            Assert.False(await Redis.KeyExistsAsync(FarmKeys.JobPreviewSequence(job.JobId)));
            await hold.Stopped.WaitAsync(cts.Token); // the worker stopped the held render: it is free for the next test
        }
        finally
        {
            hold.Release();
        }
    }

    private static (int, int) PngSize(byte[] png)
    {
        var header = RenderFarm.Imaging.ImageHeader.Read(png)!.Value;
        return (header.Width, header.Height);
    }
}
