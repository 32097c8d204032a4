using RenderFarm.Diffusion.Models;

namespace RenderFarm.Diffusion.Tests;

/// <summary>
/// The UNet's cache of prepared runs with CUDA graphs (<see cref="CudaOptions.CudaGraph"/>): a captured graph replays its
/// run's buffers and ONNX Runtime frees it only with the session, so what is captured must be bounded, whatever shapes
/// tenants' prompts make. The policy runs on the CPU provider (which ignores the graph ids) over the tiny UNet.
/// </summary>
public sealed class UNetRunCacheTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    private const int MaxGraphs = 2;

    private static UNet CapturingUNet(string directory) =>
        new(OnnxComponent.Open(directory, "unet", new DiffusionOptions()), new UNetPlacement(null, CudaGraph: true, MaxGraphs));

    /// <summary>The conditions of <paramref name="rows"/> rows whose prompts take <paramref name="windows"/> 75-token windows.</summary>
    private static UNetCondition[] Conditions(UNet unet, int rows, int windows)
    {
        int tokens = 77 * windows, hidden = unet.HiddenSize!.Value;
        return [new UNetCondition(unet.HiddenName, new float[rows * tokens * hidden], [tokens, hidden])];
    }

    [Fact]
    public void OnlyTheFirstShapesAreCapturedAndLaterOnesAreKeptAndDroppedLikeRunsWithoutGraphs()
    {
        using var unet = CapturingUNet(tiny.Directory);

        // A tenant's prompts of 1 to 8 windows, each a shape of its own (batch and size alike).
        for (int windows = 1; windows <= 8; windows++)
            unet.Prepare(2, 4, 8, 8, Conditions(unet, 2, windows));

        Assert.Equal([1, 2], unet.Runs.Where(r => r.Captured).Select(r => r.GraphId!.Value).Order());
        var uncaptured = unet.Runs.Where(r => !r.Captured).ToList();
        Assert.Equal(UNet.KeptRuns, uncaptured.Count);
        Assert.All(uncaptured, r => Assert.Equal(UNetRun.Uncaptured, r.GraphId));
    }

    [Fact]
    public void ACapturedShapeAskedForAgainReplaysItsGraph()
    {
        using var unet = CapturingUNet(tiny.Directory);
        var first = unet.Prepare(2, 4, 8, 8, Conditions(unet, 2, 1));
        for (int windows = 2; windows <= 6; windows++)
            unet.Prepare(2, 4, 8, 8, Conditions(unet, 2, windows));

        var again = unet.Prepare(2, 4, 8, 8, Conditions(unet, 2, 1));

        Assert.Same(first, again);
        Assert.Equal(1, again.GraphId);
        Assert.Equal(MaxGraphs + UNet.KeptRuns, unet.Runs.Count);
    }
}
