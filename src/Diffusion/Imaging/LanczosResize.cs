using System.Numerics.Tensors;
using RenderFarm.Imaging;

namespace RenderFarm.Diffusion.Imaging;

/// <summary>
/// Resizes init images and masks as diffusers' image processor does: PIL's <c>Image.resize(size, Image.LANCZOS)</c>,
/// a separable Lanczos3 filter that antialiases when downscaling. Skia has no Lanczos filter, hence this file.
/// <para>
/// Per axis (PIL's <c>precompute_coeffs</c>): output pixel <c>o</c> is centred on input coordinate
/// <c>c = (o + ½)·scale</c>, <c>scale = in / out</c>; when downscaling the filter is stretched by the factor
/// (<c>filterScale = max(scale, 1)</c>, support <c>3·filterScale</c>), so every input pixel contributes and a fine
/// pattern averages out instead of aliasing; input pixel <c>i</c> weighs <c>L((i + ½ − c) / filterScale)</c> with
/// <c>L(x) = sinc(x)·sinc(x/3)</c> on <c>|x| &lt; 3</c>, and an output's weights are normalised to sum to 1 (at the
/// borders the kernel is cut and renormalised). Upscaling interpolates: an output centred on an input pixel is that
/// pixel.
/// </para>
/// <para>
/// Differences from PIL, all below one 8-bit step: the pass between the two axes is kept in floats (PIL rounds it to
/// 8 bits), the result is not rounded to 8 bits, and the rows are filtered before the columns. Values are clamped to
/// [0, 1] as PIL clips to [0, 255] (Lanczos rings past the input's range at hard edges).
/// </para>
/// </summary>
internal static class LanczosResize
{
    /// <summary>Lanczos3: the kernel reaches 3 input pixels either side (times the downscale factor).</summary>
    public const double Support = 3.0;

    /// <summary>
    /// Resizes interleaved 8-bit pixels to planar floats in [0, 1], [channels, <paramref name="height"/>, <paramref name="width"/>].
    /// </summary>
    public static float[] ToPlanar(DecodedImage image, int width, int height)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 1);
        int channels = image.Channels, rowLength = image.Width * channels;
        var rows = Taps.For(image.Height, height);
        var columns = Taps.For(image.Width, width);
        var result = new float[channels * width * height];
        var row = new float[rowLength];     // one output row, filtered over the input rows, not yet over the columns
        var source = new float[rowLength];  // one input row as floats
        for (int y = 0; y < height; y++)
        {
            // Columns first: each output row is a weighted sum of whole input rows (vectorised).
            Array.Clear(row);
            var weights = rows.Of(y);
            for (int k = 0; k < weights.Length; k++)
            {
                TensorPrimitives.ConvertChecked<byte, float>(image.Pixels.AsSpan((rows.Start[y] + k) * rowLength, rowLength), source);
                TensorPrimitives.MultiplyAdd(source, weights[k], row, row);
            }
            // Then along the row, into the planes.
            for (int x = 0; x < width; x++)
            {
                var across = columns.Of(x);
                int first = columns.Start[x] * channels;
                for (int c = 0; c < channels; c++)
                {
                    float sum = 0;
                    for (int k = 0; k < across.Length; k++)
                    {
                        sum += across[k] * row[first + k * channels + c];
                    }
                    result[(c * height + y) * width + x] = Math.Clamp(sum / 255f, 0f, 1f);
                }
            }
        }
        return result;
    }

    /// <summary>L(x) = sinc(x)·sinc(x/3) on [−3, 3), else 0 (PIL's <c>lanczos_filter</c>).</summary>
    private static double Lanczos(double x) => x is >= -Support and < Support ? Sinc(x) * Sinc(x / Support) : 0.0;

    private static double Sinc(double x)
    {
        if (x == 0.0) return 1.0;
        x *= Math.PI;
        return Math.Sin(x) / x;
    }

    /// <summary>For each output pixel along one axis: the first input pixel it reads and the normalised weights.</summary>
    private sealed class Taps
    {
        private readonly float[] _weights;
        private readonly int[] _count;
        private readonly int _stride;

        private Taps(int[] start, int[] count, float[] weights, int stride)
        {
            Start = start;
            _count = count;
            _weights = weights;
            _stride = stride;
        }

        public int[] Start { get; }

        public ReadOnlySpan<float> Of(int output) => _weights.AsSpan(output * _stride, _count[output]);

        /// <summary>PIL's <c>precompute_coeffs</c> for <paramref name="inSize"/> → <paramref name="outSize"/>.</summary>
        public static Taps For(int inSize, int outSize)
        {
            double scale = (double)inSize / outSize;
            double filterScale = Math.Max(scale, 1.0);
            double support = Support * filterScale;
            int stride = (int)Math.Ceiling(support) * 2 + 1;
            var start = new int[outSize];
            var count = new int[outSize];
            var weights = new float[outSize * stride];
            var k = new double[stride];
            for (int o = 0; o < outSize; o++)
            {
                double center = (o + 0.5) * scale;
                int min = Math.Max((int)(center - support + 0.5), 0);
                int n = Math.Min((int)(center + support + 0.5), inSize) - min;
                double total = 0;
                for (int i = 0; i < n; i++)
                {
                    k[i] = Lanczos((min + i - center + 0.5) / filterScale);
                    total += k[i];
                }
                for (int i = 0; i < n; i++)
                {
                    weights[o * stride + i] = (float)(total == 0 ? k[i] : k[i] / total);
                }
                start[o] = min;
                count[o] = n;
            }
            return new Taps(start, count, weights, stride);
        }
    }
}
