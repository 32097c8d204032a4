using RenderFarm.Diffusion;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.ModelBuilder;
using RenderFarm.Protocol;
using RenderFarm.Worker;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// A worker whose model has a tiny autoencoder decoder (tiny-taesd: vae_decoder_tiny/) sends image-size previews; the
/// coordinator accepts and keeps them, and a watcher that asks for previews (the dashboard's job page, farm watch
/// --previews) receives them. The render is held at its first preview, so the previews are read while it runs.
/// </summary>
public sealed class TinyDecoderPreviewTests(TinyDecoderPreviewTests.TaesdFarm fixture) : IClassFixture<TinyDecoderPreviewTests.TaesdFarm>
{
    public sealed class TaesdFarm : IAsyncLifetime
    {
        public FarmCluster Cluster { get; private set; } = null!;
        public ControlledRenderer Renderer { get; private set; } = null!;

        public async Task InitializeAsync()
        {
            Cluster = await FarmCluster.StartAsync(workers: 0);
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
        try
        {
            var job = await fixture.Cluster.SubmitAsync(new JobHeader
            {
                Params = new GenerationParams { Width = 64, Height = 48, Steps = 3, GuidanceScale = 7f },
                Seeds = { 1, 2 },
                PreviewEvery = 1,
            }, [new PromptItem { Prompt = "a lighthouse at dusk" }]);
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
    }
}
