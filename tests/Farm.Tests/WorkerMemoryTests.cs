using RenderFarm.Diffusion;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.GenerationRules;
using RenderFarm.ModelBuilder;
using RenderFarm.ModelBuilder.Lora;
using RenderFarm.Protocol;
using RenderFarm.Worker;
using RenderFarm.Worker.Models;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// What a worker learns from running out of memory holds for the life of its process and, told to the coordinator, for
/// the fleet: it must be about the size, not about what else the worker happened to hold. A farm of its own whose
/// worker renders the tiny model with a LoRA folder on a device with room for the model and one LoRA variant (the
/// pipeline and its variants are real; only the device's capacity is simulated, as a CPU has no memory to run out of
/// at these sizes).
/// </summary>
public sealed class WorkerMemoryTests : IAsyncLifetime
{
    private const string Model = "tiny-small-device";
    private FarmCluster _farm = null!;
    private int _ranOutOfMemory;

    public async Task InitializeAsync() => _farm = await FarmCluster.StartAsync(workers: 0);

    public async Task DisposeAsync() => await _farm.DisposeAsync();

    private static JobHeader Header() => new()
    {
        Params = new GenerationParams { Model = Model, Width = 64, Height = 64, Steps = 2, GuidanceScale = 7.5f, Scheduler = "euler" },
        Seeds = { 3 },
    };

    [Fact]
    public async Task AnOutOfMemoryWhileAnotherLoraVariantIsHeldEvictsItRendersAgainAndLearnsNoLimit()
    {
        var folder = Path.Combine(_farm.Root, "loras");
        Directory.CreateDirectory(folder);
        LoraFileWriter.Write(ModelPresets.Get("tiny"), Path.Combine(folder, "style.safetensors"), new LoraWriteOptions { Rank = 4, Seed = 11 });
        await _farm.StartWorkerAsync("small-device", s =>
        {
            s.Remove($"Farm:Models:{FarmCluster.Model}");
            s[$"Farm:Models:{Model}"] = _farm.ModelDirectory;
            s["Farm:Loras"] = folder;
        }, services => services.AddSingleton<ModelLoader>(sp =>
        {
            var options = sp.GetRequiredService<Microsoft.Extensions.Options.IOptions<WorkerOptions>>().Value;
            var extensions = new ModelExtensions { Loras = sp.GetRequiredService<ExtensionFiles>().Loras };
            return (_, directory) => new OneVariantDevice(StableDiffusionPipeline.Load(directory, options.ToDiffusionOptions(), extensions),
                () => Interlocked.Increment(ref _ranOutOfMemory));
        }));
        await _farm.Jobs.WaitForWorkerAsync("small-device", w => w.Loras.Count == 1);

        // A tenant varying a multiplier: the first job leaves its variant loaded (within Farm:MaxLoraVariants); the
        // second's variant does not fit beside it.
        foreach (var prompt in new[] { "a lighthouse <lora:style:0.5>", "a lighthouse <lora:style:0.51>", "a harbour <lora:style:0.5>" })
        {
            var job = await _farm.SubmitAsync(Header(), [new PromptItem { Prompt = prompt }]);
            var finished = (await _farm.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(2)))[^1].JobFinished;
            Assert.Equal((JobState.Completed, 1u, 0u), (finished.State, finished.ImagesDone, finished.ImagesFailed));
        }

        // The size rendered once what else was held had gone: nothing is learnt, nothing refused, here or fleet-wide.
        Assert.Null(_farm.WorkerService<ModelMemory>("small-device").LimitOf(Model));
        var worker = await _farm.Jobs.WaitForWorkerAsync("small-device", _ => true);
        Assert.Empty(worker.Limits);
        // The device did run out: when the second and the third job's variant were loaded beside the one before.
        Assert.Equal(2, _ranOutOfMemory);
    }

    /// <summary>
    /// The real pipeline on a device with room for the model and one LoRA variant: a render while more are loaded runs
    /// out of memory, as ONNX Runtime's CUDA provider says it.
    /// </summary>
    private sealed class OneVariantDevice(StableDiffusionPipeline pipeline, Action ranOutOfMemory) : IShardRenderer
    {
        private readonly PipelineRenderer _inner = new(pipeline);

        public Task<IReadOnlyList<GeneratedImage>> RenderAsync(GenerationRequest request, IProgress<Diffusion.StepProgress> progress, CancellationToken cancellationToken) =>
            throw new NotSupportedException("the worker renders on the device");

        public Task<RenderedBatch> RenderOnDeviceAsync(GenerationRequest request, IProgress<Diffusion.StepProgress> progress, CancellationToken cancellationToken)
        {
            if (_inner.Variants.Count > 1)
            {
                ranOutOfMemory();
                throw new GenerationFailedException(GenerationFailureKind.OutOfMemory,
                    "ONNX Runtime failed while generating: CUDA failure 2: out of memory");
            }
            return _inner.RenderOnDeviceAsync(request, progress, cancellationToken);
        }

        public Task WarmUpAsync(CancellationToken cancellationToken) => _inner.WarmUpAsync(cancellationToken);

        public IReadOnlyList<ModelVariantInfo> Variants => _inner.Variants;

        public Task<ModelVariantInfo?> PrepareVariantAsync(LoraSet loras, CancellationToken cancellationToken) => _inner.PrepareVariantAsync(loras, cancellationToken);

        public bool ReleaseVariant(LoraSet loras) => _inner.ReleaseVariant(loras);

        public void Dispose() => _inner.Dispose();
    }
}
