using System.Numerics;
using System.Runtime.InteropServices;

namespace RenderFarm.Diffusion.Weights;

/// <summary>
/// W += A·B for a row-major W [rows, cols], A [rows, rank] and B [rank, cols]: the merge of low-rank (LoRA) updates
/// into a weight, in float32. Vectorised over columns in cache-sized tiles, parallel over rows; each element's sum
/// over the rank runs in a fixed order (fused multiply-adds, then one add to W), so the result never depends on the
/// thread count.
/// </summary>
internal static class LowRankUpdate
{
    private const int TileColumns = 1024;

    public static void Apply(Span<float> weight, int rows, int cols, ReadOnlySpan<float> a, ReadOnlySpan<float> b, int rank)
    {
        if (weight.Length != (long)rows * cols || a.Length != (long)rows * rank || b.Length != (long)rank * cols)
        {
            throw new ArgumentException($"W [{rows}, {cols}] += A [{rows}, {rank}]·B [{rank}, {cols}]: the spans do not have those sizes.");
        }
        if (rows == 0 || cols == 0 || rank == 0)
        {
            return;
        }
        unsafe
        {
            fixed (float* w = weight, pa = a, pb = b)
            {
                var (wp, ap, bp) = ((nint)w, (nint)pa, (nint)pb);
                int chunk = Math.Max(1, rows / (4 * Environment.ProcessorCount));
                int chunks = (rows + chunk - 1) / chunk;
                Parallel.For(0, chunks, c =>
                {
                    int first = c * chunk, last = Math.Min(rows, first + chunk);
                    Rows((float*)wp, (float*)ap, (float*)bp, first, last, cols, rank);
                });
            }
        }
    }

    private static unsafe void Rows(float* w, float* a, float* b, int first, int last, int cols, int rank)
    {
        int width = Vector<float>.Count;
        for (int tile = 0; tile < cols; tile += TileColumns)
        {
            int end = Math.Min(cols, tile + TileColumns);
            for (int row = first; row < last; row++)
            {
                float* aRow = a + (long)row * rank;
                float* wRow = w + (long)row * cols;
                int c = tile;
                for (; c + 4 * width <= end; c += 4 * width)
                {
                    Vector<float> s0 = default, s1 = default, s2 = default, s3 = default;
                    for (int k = 0; k < rank; k++)
                    {
                        var scale = new Vector<float>(aRow[k]);
                        float* bRow = b + (long)k * cols + c;
                        s0 = Vector.FusedMultiplyAdd(scale, Vector.Load(bRow), s0);
                        s1 = Vector.FusedMultiplyAdd(scale, Vector.Load(bRow + width), s1);
                        s2 = Vector.FusedMultiplyAdd(scale, Vector.Load(bRow + 2 * width), s2);
                        s3 = Vector.FusedMultiplyAdd(scale, Vector.Load(bRow + 3 * width), s3);
                    }
                    Vector.Store(Vector.Load(wRow + c) + s0, wRow + c);
                    Vector.Store(Vector.Load(wRow + c + width) + s1, wRow + c + width);
                    Vector.Store(Vector.Load(wRow + c + 2 * width) + s2, wRow + c + 2 * width);
                    Vector.Store(Vector.Load(wRow + c + 3 * width) + s3, wRow + c + 3 * width);
                }
                for (; c < end; c++)
                {
                    // The same order as a vector lane: fused multiply-adds over the rank, then one add.
                    float sum = 0f;
                    for (int k = 0; k < rank; k++)
                    {
                        sum = MathF.FusedMultiplyAdd(aRow[k], b[(long)k * cols + c], sum);
                    }
                    wRow[c] += sum;
                }
            }
        }
    }

    /// <summary>Transposes <paramref name="source"/> [rows, cols] into <paramref name="destination"/> [cols, rows].</summary>
    public static void Transpose(ReadOnlySpan<float> source, int rows, int cols, Span<float> destination)
    {
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < cols; c++)
            {
                destination[c * rows + r] = source[r * cols + c];
            }
        }
    }
}
