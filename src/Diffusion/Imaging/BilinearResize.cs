namespace RenderFarm.Diffusion.Imaging;

/// <summary>
/// PyTorch's <c>F.interpolate(x, size, mode="bilinear", align_corners=False, antialias=False)</c> on planar tensors
/// [N·C, h, w]: what AUTOMATIC1111's "Latent" hires upscaler does to the latents. Output pixel o reads source coordinate
/// <c>max((o + ½)·in/out − ½, 0)</c>, interpolating its two neighbours (the last clamped to the edge).
/// </summary>
internal static class BilinearResize
{
    public static float[] Resize(ReadOnlySpan<float> source, int planes, int height, int width, int outHeight, int outWidth)
    {
        var rows = Taps(height, outHeight);
        var columns = Taps(width, outWidth);
        var result = new float[planes * outHeight * outWidth];
        for (int p = 0; p < planes; p++)
        {
            var plane = source.Slice(p * height * width, height * width);
            for (int y = 0; y < outHeight; y++)
            {
                var (y0, y1, wy) = rows[y];
                int target = (p * outHeight + y) * outWidth;
                for (int x = 0; x < outWidth; x++)
                {
                    var (x0, x1, wx) = columns[x];
                    float top = (1 - wx) * plane[y0 * width + x0] + wx * plane[y0 * width + x1];
                    float bottom = (1 - wx) * plane[y1 * width + x0] + wx * plane[y1 * width + x1];
                    result[target + x] = (1 - wy) * top + wy * bottom;
                }
            }
        }
        return result;
    }

    private static (int Low, int High, float Weight)[] Taps(int inSize, int outSize)
    {
        float scale = (float)inSize / outSize;
        var taps = new (int, int, float)[outSize];
        for (int o = 0; o < outSize; o++)
        {
            float source = Math.Max(scale * (o + 0.5f) - 0.5f, 0f);
            int low = Math.Min((int)source, inSize - 1);
            int high = low < inSize - 1 ? low + 1 : low;
            taps[o] = (low, high, source - low);
        }
        return taps;
    }
}
