using Microsoft.ML.OnnxRuntime;
using RenderFarm.Diffusion.ControlNets;
using RenderFarm.Diffusion.Imaging;
using RenderFarm.Diffusion.Models;
using RenderFarm.Imaging;

namespace RenderFarm.Diffusion.Generation;

/// <summary>
/// The ControlNets of one model batch, as diffusers' ControlNet pipeline runs them: every step each ControlNet sees the
/// UNet's scaled latents (CFG rows included), the timestep, the same text conditioning, and its control image repeated
/// for every row; its residuals, scaled by its conditioning scale, are summed over the ControlNets in order and fed to
/// the UNet (<see cref="UNetRun.SetResiduals"/>).
/// </summary>
internal sealed class ControlGuidance : IDisposable
{
    private readonly ControlNetRun[] _runs;
    private readonly float[][] _sums;

    /// <summary>
    /// <paramref name="units"/>: each ControlNet with its prepared control image [3, H, W] (<see cref="PrepareImage"/>) and
    /// scale; <paramref name="hidden"/>: the batch's encoder_hidden_states condition (one row per UNet row of
    /// <paramref name="rows"/>); the residuals' shapes follow the UNet's <paramref name="residuals"/> at the latent size.
    /// </summary>
    public ControlGuidance(IReadOnlyList<(ControlNet Net, float[] Image, float Scale)> units, ControlResiduals residuals, int rows,
        int latentHeight, int latentWidth, UNetCondition hidden, int width, int height)
    {
        _sums = residuals.All.Select(r => new float[rows * r.PerRow(latentHeight, latentWidth)]).ToArray();
        var runs = new List<ControlNetRun>();
        try
        {
            foreach (var (net, image, scale) in units)
            {
                var imageRows = new float[rows * image.Length];
                for (int r = 0; r < rows; r++) image.CopyTo(imageRows, r * image.Length);
                runs.Add(net.Prepare(rows, latentHeight, latentWidth, hidden.Rows, hidden.RowShape, imageRows, height, width, scale, residuals));
            }
        }
        catch
        {
            foreach (var run in runs) run.Dispose();
            throw;
        }
        _runs = [.. runs];
    }

    /// <summary>
    /// A control image as diffusers' control image processor prepares it: decoded as RGB, resized to the request's
    /// size (Lanczos, as PIL), values in [0, 1], [3, H, W].
    /// </summary>
    /// <exception cref="ArgumentException">The image does not decode, or is over <paramref name="maxPixels"/>.</exception>
    public static float[] PrepareImage(ControlNetUnit unit, int index, int width, int height, long maxPixels) =>
        LanczosResize.ToPlanar(ImageDecoder.Decode(unit.Image, grey: false, maxPixels, nameof(GenerationRequest.ControlNets),
            $"The control image of ControlNet {index} ({unit.Model})"), width, height);

    /// <summary>This step's summed residuals for <paramref name="sample"/> [rows, 4, h, w] at <paramref name="timestep"/>.</summary>
    public IReadOnlyList<float[]> Compute(ReadOnlySpan<float> sample, double timestep, RunOptions runOptions)
    {
        for (int i = 0; i < _runs.Length; i++)
        {
            _runs[i].Run(sample, timestep, _sums, first: i == 0, runOptions);
        }
        return _sums;
    }

    public void Dispose()
    {
        foreach (var run in _runs) run.Dispose();
    }
}
