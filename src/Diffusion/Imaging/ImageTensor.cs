using System.Numerics.Tensors;

namespace RenderFarm.Diffusion.Imaging;

/// <summary>Image ↔ model tensor conversions: [0, 255] ↔ [−1, 1], planar layout, masks (resizing: <see cref="LanczosResize"/>).</summary>
internal static class ImageTensor
{
    /// <summary>[0, 1] → [−1, 1] in place (the VAE's input range).</summary>
    public static void ToSigned(Span<float> values)
    {
        for (int i = 0; i < values.Length; i++) values[i] = values[i] * 2f - 1f;
    }

    /// <summary>Binarises a [0, 1] mask in place as diffusers does: ≥ 0.5 → 1 (repaint), else 0 (keep).</summary>
    public static void Binarise(Span<float> mask)
    {
        for (int i = 0; i < mask.Length; i++) mask[i] = mask[i] >= 0.5f ? 1f : 0f;
    }

    /// <summary>Nearest-neighbour downsampling of a [H, W] mask to [h, w] (torch interpolate's default mode).</summary>
    public static float[] Downsample(ReadOnlySpan<float> mask, int width, int height, int targetWidth, int targetHeight)
    {
        var result = new float[targetWidth * targetHeight];
        for (int y = 0; y < targetHeight; y++)
        {
            int sy = Math.Min((int)Math.Floor(y * (double)height / targetHeight), height - 1);
            for (int x = 0; x < targetWidth; x++)
            {
                int sx = Math.Min((int)Math.Floor(x * (double)width / targetWidth), width - 1);
                result[y * targetWidth + x] = mask[sy * width + sx];
            }
        }
        return result;
    }

    /// <summary>
    /// The first of <paramref name="count"/> equal-sized images in <paramref name="values"/> with a NaN or infinite value
    /// (a model that overflowed float16), or −1. The RGB conversion would clamp them silently to black or white.
    /// </summary>
    public static int FirstNonFinite(ReadOnlySpan<float> values, int count)
    {
        int perImage = values.Length / count;
        for (int b = 0; b < count; b++)
        {
            if (!TensorPrimitives.IsFiniteAll(values.Slice(b * perImage, perImage))) return b;
        }
        return -1;
    }

    /// <summary>[3, H, W] in [−1, 1] → interleaved RGB bytes: round(clamp(x/2 + 0.5, 0, 1) · 255).</summary>
    public static byte[] ToRgb(ReadOnlySpan<float> chw, int width, int height)
    {
        var rgb = new byte[width * height * 3];
        ToRgb(chw, width, height, rgb);
        return rgb;
    }

    /// <summary><see cref="ToRgb(ReadOnlySpan{float}, int, int)"/> into <paramref name="rgb"/> (width·height·3 bytes).</summary>
    public static void ToRgb(ReadOnlySpan<float> chw, int width, int height, Span<byte> rgb)
    {
        int plane = width * height;
        if (chw.Length != 3 * plane || rgb.Length != 3 * plane)
        {
            throw new ArgumentException($"Expected {3 * plane} values and bytes for {width}x{height}, got {chw.Length} and {rgb.Length}.");
        }
        var scratch = System.Buffers.ArrayPool<float>.Shared.Rent(plane);
        try
        {
            var v = scratch.AsSpan(0, plane);
            for (int c = 0; c < 3; c++)
            {
                // Vectorised, the same float operations as round(clamp(x·0.5 + 0.5, 0, 1)·255) element by element
                // (x/2 ≡ x·0.5 exactly); MaxNumber maps NaN to 0 as before.
                TensorPrimitives.Multiply(chw.Slice(c * plane, plane), 0.5f, v);
                TensorPrimitives.Add(v, 0.5f, v);
                TensorPrimitives.MaxNumber(v, 0f, v);
                TensorPrimitives.MinNumber(v, 1f, v);
                TensorPrimitives.Multiply(v, 255f, v);
                TensorPrimitives.Round(v, v); // to even
                for (int p = 0; p < plane; p++)
                {
                    rgb[p * 3 + c] = (byte)v[p];
                }
            }
        }
        finally
        {
            System.Buffers.ArrayPool<float>.Shared.Return(scratch);
        }
    }
}
