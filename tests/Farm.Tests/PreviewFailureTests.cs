using Google.Protobuf;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.ModelBuilder;
using RenderFarm.ModelBuilder.Onnx;
using RenderFarm.Protocol;
using RenderFarm.Worker;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// A live preview is a nicety: one that cannot be made must not cost the images, nor teach the worker anything about
/// its memory. A farm of its own whose worker renders tiny-taesd with a tiny decoder exported for 8×8 latents only: it
/// passes the worker's warm-up (64×64) and fails on every preview of another size, as ONNX Runtime's shape check.
/// </summary>
public sealed class PreviewFailureTests : IAsyncLifetime
{
    private const string Model = "tiny-taesd-8x8";
    private FarmCluster _farm = null!;

    public async Task InitializeAsync() =>
        _farm = await FarmCluster.StartAsync(workers: 0, configure: s => s["Farm:PreviewIntervalMilliseconds"] = "0");

    public async Task DisposeAsync() => await _farm.DisposeAsync();

    [Fact]
    public async Task APreviewThatCannotBeMadeIsDroppedAndTheImagesAreDeliveredWithNoLimitLearnt()
    {
        var model = Path.Combine(_farm.Root, Model);
        ModelPresets.Write("tiny-taesd", model);
        FixLatentSize(Path.Combine(model, ModelDirectoryWriter.TinyDecoderFolder, "model.onnx"), height: 8, width: 8);
        await _farm.StartWorkerAsync("previewing", s =>
        {
            s.Remove($"Farm:Models:{FarmCluster.Model}");
            s[$"Farm:Models:{Model}"] = model;
        });

        var job = await _farm.SubmitAsync(new JobHeader
        {
            Params = new GenerationParams { Model = Model, Width = 64, Height = 48, Steps = 3, GuidanceScale = 7f },
            Seeds = { 1, 2 },
            PreviewEvery = 1,
        }, [new PromptItem { Prompt = "a lighthouse at dusk" }]);
        var events = await _farm.Jobs.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(2), onEvent: e => e.AttemptFailed is { } failed
            ? throw new Xunit.Sdk.XunitException($"attempt {failed.Attempt} failed ({failed.Kind}): {failed.Error}")
            : Task.CompletedTask);

        var finished = events[^1].JobFinished;
        Assert.Equal((JobState.Completed, 2u, 0u), (finished.State, finished.ImagesDone, finished.ImagesFailed));
        Assert.All(await _farm.Jobs.DownloadAllAsync(job.JobId), image =>
        {
            var header = RenderFarm.Imaging.ImageHeader.Read(image.Png)!.Value;
            Assert.Equal((64, 48), (header.Width, header.Height));
        });
        Assert.Null(_farm.WorkerService<ModelMemory>("previewing").LimitOf(Model));
    }

    /// <summary>Rewrites a decoder's latent_sample input to a static height × width, as an export for one size is.</summary>
    private static void FixLatentSize(string modelPath, long height, long width)
    {
        var onnx = ModelProto.Parser.ParseFrom(File.ReadAllBytes(modelPath));
        var shape = onnx.Graph.Input.Single(i => i.Name == "latent_sample").Type.TensorType.Shape;
        shape.Dim[2] = new TensorShapeProto.Types.Dimension { DimValue = height };
        shape.Dim[3] = new TensorShapeProto.Types.Dimension { DimValue = width };
        File.WriteAllBytes(modelPath, onnx.ToByteArray());
    }
}
