using System.Numerics;

namespace RenderFarm.Diffusion.Weights;

/// <summary>
/// W += A·B for a row-major W [rows, cols], A [rows, rank] and B [rank, cols]: the merge of low-rank (LoRA) updates
/// into a weight, in float32. Vectorised over columns in cache-sized tiles, parallel over rows; each element's sum
/// over the rank runs in a fixed order (fused multiply-adds, then one add to W), so the result never depends on the
/// thread count.
/// </summary>
internal static class LowRankUpdate
{
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
        // Columns per tile so that the tile of B (rank × tile floats) stays in the L1/L2 cache across rows.
        int tileColumns = Math.Max(4 * width, 8192 / rank / (4 * width) * (4 * width));
        for (int tile = 0; tile < cols; tile += tileColumns)
        {
            int end = Math.Min(cols, tile + tileColumns);
            int row = first;
            // Two rows at a time share each load of B.
            for (; row + 1 < last; row += 2)
            {
                float* a0 = a + (long)row * rank, a1 = a0 + rank;
                float* w0 = w + (long)row * cols, w1 = w0 + cols;
                int c = tile;
                for (; c + 4 * width <= end; c += 4 * width)
                {
                    Vector<float> s00 = default, s01 = default, s02 = default, s03 = default;
                    Vector<float> s10 = default, s11 = default, s12 = default, s13 = default;
                    for (int k = 0; k < rank; k++)
                    {
                        float* bRow = b + (long)k * cols + c;
                        var b0 = Vector.Load(bRow);
                        var b1 = Vector.Load(bRow + width);
                        var b2 = Vector.Load(bRow + 2 * width);
                        var b3 = Vector.Load(bRow + 3 * width);
                        var x = new Vector<float>(a0[k]);
                        s00 = Vector.FusedMultiplyAdd(x, b0, s00);
                        s01 = Vector.FusedMultiplyAdd(x, b1, s01);
                        s02 = Vector.FusedMultiplyAdd(x, b2, s02);
                        s03 = Vector.FusedMultiplyAdd(x, b3, s03);
                        var y = new Vector<float>(a1[k]);
                        s10 = Vector.FusedMultiplyAdd(y, b0, s10);
                        s11 = Vector.FusedMultiplyAdd(y, b1, s11);
                        s12 = Vector.FusedMultiplyAdd(y, b2, s12);
                        s13 = Vector.FusedMultiplyAdd(y, b3, s13);
                    }
                    Add(w0 + c, width, s00, s01, s02, s03);
                    Add(w1 + c, width, s10, s11, s12, s13);
                }
                Tail(w0, a0, b, c, end, cols, rank);
                Tail(w1, a1, b, c, end, cols, rank);
            }
            for (; row < last; row++)
            {
                float* a0 = a + (long)row * rank, w0 = w + (long)row * cols;
                int c = tile;
                for (; c + 4 * width <= end; c += 4 * width)
                {
                    Vector<float> s0 = default, s1 = default, s2 = default, s3 = default;
                    for (int k = 0; k < rank; k++)
                    {
                        var x = new Vector<float>(a0[k]);
                        float* bRow = b + (long)k * cols + c;
                        s0 = Vector.FusedMultiplyAdd(x, Vector.Load(bRow), s0);
                        s1 = Vector.FusedMultiplyAdd(x, Vector.Load(bRow + width), s1);
                        s2 = Vector.FusedMultiplyAdd(x, Vector.Load(bRow + 2 * width), s2);
                        s3 = Vector.FusedMultiplyAdd(x, Vector.Load(bRow + 3 * width), s3);
                    }
                    Add(w0 + c, width, s0, s1, s2, s3);
                }
                Tail(w0, a0, b, c, end, cols, rank);
            }
        }
    }

    private static unsafe void Add(float* w, int width, Vector<float> s0, Vector<float> s1, Vector<float> s2, Vector<float> s3)
    {
        Vector.Store(Vector.Load(w) + s0, w);
        Vector.Store(Vector.Load(w + width) + s1, w + width);
        Vector.Store(Vector.Load(w + 2 * width) + s2, w + 2 * width);
        Vector.Store(Vector.Load(w + 3 * width) + s3, w + 3 * width);
    }

    /// <summary>Columns [from, end) of one row, in the same order as a vector lane: fused multiply-adds over the rank, then one add.</summary>
    private static unsafe void Tail(float* wRow, float* aRow, float* b, int from, int end, int cols, int rank)
    {
        for (int c = from; c < end; c++)
        {
            float sum = 0f;
            for (int k = 0; k < rank; k++)
            {
                sum = MathF.FusedMultiplyAdd(aRow[k], b[(long)k * cols + c], sum);
            }
            wRow[c] += sum;
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
