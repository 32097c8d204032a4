namespace RenderFarm.Diffusion.Imaging;

/// <summary>
/// Shrinks planar images [planes, h, w] by averaging boxes of source pixels (PIL's BOX filter for integer boxes):
/// output pixel (x, y) is the mean of source columns [⌊x·w/W⌋, ⌊(x+1)·w/W⌋) and rows alike, each box at least one
/// pixel. Every source pixel counts once, so a large preview shrinks without the aliasing of a nearest-pixel pick.
/// </summary>
internal static class AreaDownscale
{
    public static float[] Downscale(ReadOnlySpan<float> source, int planes, int width, int height, int outWidth, int outHeight)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(outWidth, width);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(outHeight, height);
        var columns = Boxes(width, outWidth);
        var rows = Boxes(height, outHeight);
        var result = new float[planes * outWidth * outHeight];
        var rowSums = new float[width];
        for (int p = 0; p < planes; p++)
        {
            var plane = source.Slice(p * width * height, width * height);
            for (int y = 0; y < outHeight; y++)
            {
                var (top, bottom) = rows[y];
                Array.Clear(rowSums);
                for (int sy = top; sy < bottom; sy++)
                    System.Numerics.Tensors.TensorPrimitives.Add(rowSums, plane.Slice(sy * width, width), rowSums);
                int target = (p * outHeight + y) * outWidth;
                for (int x = 0; x < outWidth; x++)
                {
                    var (left, right) = columns[x];
                    float sum = 0;
                    for (int sx = left; sx < right; sx++) sum += rowSums[sx];
                    result[target + x] = sum / ((right - left) * (bottom - top));
                }
            }
        }
        return result;
    }

    private static (int Start, int End)[] Boxes(int inSize, int outSize)
    {
        var boxes = new (int, int)[outSize];
        for (int o = 0; o < outSize; o++)
        {
            int start = (int)((long)o * inSize / outSize);
            int end = (int)((long)(o + 1) * inSize / outSize);
            boxes[o] = (start, Math.Max(end, start + 1));
        }
        return boxes;
    }
}
