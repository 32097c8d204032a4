namespace RenderFarm.Diffusion.Upscaling;

/// <summary>Runs the upscaler on one tile: [3, height, width] in, [3, scale·height, scale·width] out.</summary>
internal delegate void TileRun(ReadOnlySpan<float> tile, int height, int width, Span<float> destination);

/// <summary>
/// Upscales a planar RGB image [3, H, W] (values in [0, 1]) tile by tile (<see cref="UpscaleTiling"/>). Along each axis
/// the image is cut into n cores (seams at multiples of 4); tile i reads its core plus half the overlap either side
/// (shifted inwards at the image's edges to keep its full length), and contributes to the result only within a
/// quarter overlap of its seams: there a linear ramp hands over to the neighbour, so every output pixel is a convex
/// blend of at most two tiles per axis, each of which saw at least a quarter overlap of real context around it. The
/// image is first padded to a multiple of 4 by repeating its last row and column (RRDBNet's ×2 and ×1 exports
/// pixel-unshuffle their input) and the result cropped back.
/// </summary>
internal static class TiledUpscale
{
    /// <summary>Tile offsets and sides stay on this grain (a ×1 RRDBNet unshuffles 4×4 blocks).</summary>
    public const int Grain = 4;

    /// <param name="image">The image [3, height, width], values in [0, 1].</param>
    /// <param name="width">The image width.</param>
    /// <param name="height">The image height.</param>
    /// <param name="scale">The upscaler's factor per axis.</param>
    /// <param name="tiling">How big the tiles are and how much they overlap.</param>
    /// <param name="fixedHeight">The export's static input height (every tile must have it), else null.</param>
    /// <param name="fixedWidth">The export's static input width, else null.</param>
    /// <param name="run">Runs the upscaler on one tile.</param>
    /// <param name="cancellationToken">Checked between tiles.</param>
    public static float[] Run(ReadOnlySpan<float> image, int width, int height, int scale, UpscaleTiling tiling, int? fixedHeight, int? fixedWidth,
        TileRun run, CancellationToken cancellationToken)
    {
        int paddedWidth = RoundUp(width), paddedHeight = RoundUp(height);
        var padded = paddedWidth == width && paddedHeight == height ? image : Pad(image, width, height, paddedWidth, paddedHeight);
        var rows = Axis.Plan(paddedHeight, tiling, fixedHeight);
        var columns = Axis.Plan(paddedWidth, tiling, fixedWidth);
        int outWidth = paddedWidth * scale, outHeight = paddedHeight * scale;
        var result = new float[3 * outWidth * outHeight];
        foreach (var row in rows)
        {
            foreach (var column in columns)
            {
                cancellationToken.ThrowIfCancellationRequested();
                int tileHeight = fixedHeight ?? row.Length, tileWidth = fixedWidth ?? column.Length;
                var tile = Extract(padded, paddedWidth, paddedHeight, row.Start, column.Start, tileHeight, tileWidth);
                var upscaled = new float[3 * tileHeight * scale * tileWidth * scale];
                run(tile, tileHeight, tileWidth, upscaled);
                Blend(upscaled, tileWidth * scale, row, column, scale, result, outWidth, outHeight);
            }
        }
        return paddedWidth == width && paddedHeight == height ? result : Crop(result, outWidth, outHeight, width * scale, height * scale);
    }

    private static int RoundUp(int side) => (side + Grain - 1) / Grain * Grain;

    /// <summary>Adds this tile's weighted values to <paramref name="result"/> where its weight is not zero.</summary>
    private static void Blend(float[] tile, int tileWidth, Axis.Tile row, Axis.Tile column, int scale, float[] result, int outWidth, int outHeight)
    {
        var (y0, y1) = row.Reach(scale, outHeight);
        var (x0, x1) = column.Reach(scale, outWidth);
        int tileHeight = tile.Length / 3 / tileWidth;
        int tileTop = row.Start * scale, tileLeft = column.Start * scale;
        var across = new float[x1 - x0];
        for (int x = x0; x < x1; x++) across[x - x0] = column.Weight(x, scale);
        for (int c = 0; c < 3; c++)
        {
            for (int y = y0; y < y1; y++)
            {
                float down = row.Weight(y, scale);
                if (down == 0f) continue;
                int source = (c * tileHeight + y - tileTop) * tileWidth - tileLeft;
                int target = (c * outHeight + y) * outWidth;
                for (int x = x0; x < x1; x++)
                {
                    result[target + x] += down * across[x - x0] * tile[source + x];
                }
            }
        }
    }

    /// <summary>[3, length rows, length columns] of the image from (top, left); rows and columns past the image repeat its last.</summary>
    private static float[] Extract(ReadOnlySpan<float> image, int width, int height, int top, int left, int tileHeight, int tileWidth)
    {
        var tile = new float[3 * tileHeight * tileWidth];
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < tileHeight; y++)
            {
                int sy = Math.Min(top + y, height - 1);
                var source = image.Slice((c * height + sy) * width, width);
                var target = tile.AsSpan((c * tileHeight + y) * tileWidth, tileWidth);
                int inside = Math.Max(0, Math.Min(tileWidth, width - left));
                source.Slice(left, inside).CopyTo(target);
                target[inside..].Fill(source[width - 1]);
            }
        return tile;
    }

    private static float[] Pad(ReadOnlySpan<float> image, int width, int height, int paddedWidth, int paddedHeight) =>
        Extract(image, width, height, 0, 0, paddedHeight, paddedWidth);

    private static float[] Crop(float[] image, int width, int height, int cropWidth, int cropHeight)
    {
        var result = new float[3 * cropWidth * cropHeight];
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < cropHeight; y++)
                image.AsSpan((c * height + y) * width, cropWidth).CopyTo(result.AsSpan((c * cropHeight + y) * cropWidth));
        return result;
    }

    /// <summary>How one axis is cut: the tiles' input ranges and the seams between their cores.</summary>
    internal static class Axis
    {
        /// <summary>
        /// One tile along an axis: it reads input [Start, Start + Length); its core runs from seam
        /// <see cref="Seam"/> to <see cref="NextSeam"/> (null at the image's edges), each blended over ±<see cref="Ramp"/> input pixels.
        /// </summary>
        public readonly record struct Tile(int Start, int Length, int? Seam, int? NextSeam, int Ramp)
        {
            /// <summary>Output pixels [from, to) where this tile's weight may be above zero.</summary>
            public (int From, int To) Reach(int scale, int outSize) =>
                (Seam is int s ? Math.Max(0, (s - Ramp) * scale) : 0, NextSeam is int e ? Math.Min(outSize, (e + Ramp) * scale) : outSize);

            /// <summary>This tile's weight at output pixel <paramref name="o"/> along the axis.</summary>
            public float Weight(int o, int scale) =>
                (Seam is int s ? Rise(o, s, scale) : 1f) * (NextSeam is int e ? 1f - Rise(o, e, scale) : 1f);

            /// <summary>0 before the seam's ramp, 1 after it, linear across it (at pixel centres); a step without a ramp.</summary>
            private float Rise(int o, int seam, int scale)
            {
                double centre = o + 0.5, at = seam * (double)scale;
                if (Ramp == 0) return centre >= at ? 1f : 0f;
                double half = Ramp * (double)scale;
                return (float)Math.Clamp((centre - (at - half)) / (2 * half), 0, 1);
            }
        }

        /// <summary>The tiles of an axis of <paramref name="size"/> pixels (a multiple of <see cref="Grain"/>).</summary>
        public static Tile[] Plan(int size, UpscaleTiling tiling, int? fixedTile)
        {
            int tile = fixedTile ?? tiling.TileSize;
            int overlap = Math.Min(tiling.Overlap, Math.Max(0, (tile - 8) / 2) / 8 * 8);
            if (tile <= 0 || size <= tile)
            {
                return [new Tile(0, fixedTile is int f ? Math.Min(f, size) : size, null, null, 0)];
            }
            int count = (size + tile - overlap - 1) / (tile - overlap);
            var seams = new int[count + 1];
            int units = size / Grain;
            for (int i = 0; i <= count; i++)
            {
                seams[i] = (int)Math.Round(i * (double)units / count, MidpointRounding.AwayFromZero) * Grain;
            }
            var tiles = new Tile[count];
            for (int i = 0; i < count; i++)
            {
                int start = Math.Clamp(seams[i] - overlap / 2, 0, size - tile);
                tiles[i] = new Tile(start, tile, i > 0 ? seams[i] : null, i < count - 1 ? seams[i + 1] : null, overlap / 4);
            }
            return tiles;
        }
    }
}
