namespace RenderFarm.Imaging;

/// <summary>
/// Canny edge detection, the preprocessor of canny ControlNets: luma (ITU-R 601-2, as PIL's <c>convert("L")</c>), a 5×5
/// Gaussian blur (σ 1.4) against noise, Sobel gradients, non-maximum suppression along the gradient direction (edges one
/// pixel wide), then hysteresis: pixels whose gradient magnitude is at least <c>high</c> are edges, and so are pixels
/// of at least <c>low</c> connected (8-neighbourhood) to one. The result is white edges on black, as the ControlNet was
/// trained on; A1111's defaults are low 100, high 200.
/// </summary>
public static class CannyEdges
{
    public const int DefaultLow = 100;
    public const int DefaultHigh = 200;

    /// <summary>Edges of <paramref name="image"/> (RGB or grey) as a one-channel image: 255 on an edge, 0 elsewhere.</summary>
    public static DecodedImage Detect(DecodedImage image, double low = DefaultLow, double high = DefaultHigh)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (!(low >= 0 && high >= low))
        {
            throw new ArgumentOutOfRangeException(nameof(low), $"thresholds must satisfy 0 <= low <= high (got {low}, {high})");
        }
        int w = image.Width, h = image.Height;
        var blurred = Blur(Luma(image), w, h);
        var (magnitude, direction) = Sobel(blurred, w, h);
        var thin = Suppress(magnitude, direction, w, h);
        return new DecodedImage(Hysteresis(thin, w, h, low, high), w, h, 1);
    }

    private static float[] Luma(DecodedImage image)
    {
        var luma = new float[image.Width * image.Height];
        var p = image.Pixels;
        for (int i = 0; i < luma.Length; i++)
        {
            luma[i] = image.Channels == 1 ? p[i] : 0.299f * p[i * image.Channels] + 0.587f * p[i * image.Channels + 1] + 0.114f * p[i * image.Channels + 2];
        }
        return luma;
    }

    /// <summary>Separable 5-tap Gaussian, σ 1.4, borders replicated.</summary>
    private static float[] Blur(float[] values, int w, int h)
    {
        var kernel = new float[5];
        for (int i = 0; i < 5; i++) kernel[i] = MathF.Exp(-(i - 2) * (i - 2) / (2 * 1.4f * 1.4f));
        float sum = kernel.Sum();
        for (int i = 0; i < 5; i++) kernel[i] /= sum;
        var rows = new float[values.Length];
        var result = new float[values.Length];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                float v = 0;
                for (int k = -2; k <= 2; k++) v += kernel[k + 2] * values[y * w + Math.Clamp(x + k, 0, w - 1)];
                rows[y * w + x] = v;
            }
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                float v = 0;
                for (int k = -2; k <= 2; k++) v += kernel[k + 2] * rows[Math.Clamp(y + k, 0, h - 1) * w + x];
                result[y * w + x] = v;
            }
        return result;
    }

    /// <summary>Sobel 3×3 gradients: magnitude (L2) and direction quantised to 0°, 45°, 90°, 135° (0–3).</summary>
    private static (float[] Magnitude, byte[] Direction) Sobel(float[] v, int w, int h)
    {
        var magnitude = new float[v.Length];
        var direction = new byte[v.Length];
        float At(int x, int y) => v[Math.Clamp(y, 0, h - 1) * w + Math.Clamp(x, 0, w - 1)];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                float gx = At(x + 1, y - 1) + 2 * At(x + 1, y) + At(x + 1, y + 1) - At(x - 1, y - 1) - 2 * At(x - 1, y) - At(x - 1, y + 1);
                float gy = At(x - 1, y + 1) + 2 * At(x, y + 1) + At(x + 1, y + 1) - At(x - 1, y - 1) - 2 * At(x, y - 1) - At(x + 1, y - 1);
                magnitude[y * w + x] = MathF.Sqrt(gx * gx + gy * gy);
                float angle = MathF.Atan2(gy, gx) * 180f / MathF.PI;
                if (angle < 0) angle += 180f;
                direction[y * w + x] = angle < 22.5f || angle >= 157.5f ? (byte)0 : angle < 67.5f ? (byte)1 : angle < 112.5f ? (byte)2 : (byte)3;
            }
        return (magnitude, direction);
    }

    /// <summary>Keeps a pixel only where its magnitude is a maximum across the edge (along the gradient).</summary>
    private static float[] Suppress(float[] m, byte[] direction, int w, int h)
    {
        var thin = new float[m.Length];
        float At(int x, int y) => x < 0 || y < 0 || x >= w || y >= h ? 0 : m[y * w + x];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                var (dx, dy) = direction[y * w + x] switch { 0 => (1, 0), 1 => (1, 1), 2 => (0, 1), _ => (-1, 1) };
                float here = m[y * w + x];
                // Ties go to one side only, so a plateau still leaves a line one pixel wide.
                if (here > 0 && here >= At(x + dx, y + dy) && here > At(x - dx, y - dy)) thin[y * w + x] = here;
            }
        return thin;
    }

    private static byte[] Hysteresis(float[] m, int w, int h, double low, double high)
    {
        var edges = new byte[m.Length];
        var pending = new Stack<int>();
        for (int i = 0; i < m.Length; i++)
        {
            if (m[i] >= high && edges[i] == 0)
            {
                edges[i] = 255;
                pending.Push(i);
            }
            while (pending.Count > 0)
            {
                int p = pending.Pop(), px = p % w, py = p / w;
                for (int ny = Math.Max(0, py - 1); ny <= Math.Min(h - 1, py + 1); ny++)
                    for (int nx = Math.Max(0, px - 1); nx <= Math.Min(w - 1, px + 1); nx++)
                    {
                        int n = ny * w + nx;
                        if (edges[n] == 0 && m[n] >= low)
                        {
                            edges[n] = 255;
                            pending.Push(n);
                        }
                    }
            }
        }
        return edges;
    }
}
