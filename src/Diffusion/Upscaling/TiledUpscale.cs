namespace RenderFarm.Diffusion.Upscaling;

/// <summary>Runs the upscaler on one tile: [3, height, width] in, [3, scale·height, scale·width] out.</summary>
internal delegate void TileRun(ReadOnlySpan<float> tile, int height, int width, Span<float> destination);

/// <summary>Tells that output rows [top, top + rows) are final: written once, in bands from the top down.</summary>
internal delegate void BandWritten(int top, int rows);

/// <summary>
/// Upscales interleaved 8-bit RGB tile by tile (<see cref="UpscaleTiling"/>) into interleaved 8-bit RGB. Along each axis
/// the image is cut into n cores (seams at multiples of 4); tile i reads its core plus half the overlap either side
/// (shifted inwards at the image's edges to keep its full length), and contributes to the result only within a
/// quarter overlap of its seams: there a linear ramp hands over to the neighbour, so every output pixel is a convex
/// blend of at most two tiles per axis, each of which saw at least a quarter overlap of real context around it. Tiles
/// read past the image's last row and column repeat them (RRDBNet's ×2 and ×1 exports pixel-unshuffle their input, so
/// the image is treated as padded to a multiple of 4), and what the model makes of the padding is never written.
/// <para>
/// Memory: one row of tiles at a time is blended in floats into a band as tall as a tile's reach; the rows no later
/// tile touches are then converted to bytes straight into the destination, and the rows the next row of tiles
/// cross-fades into are moved to the top of the band. Besides the destination, a run holds that band (3 floats per
/// output pixel of a tile-high strip) and one tile in and out, whatever the image's height.
/// </para>
/// </summary>
internal static class TiledUpscale
{
    /// <summary>Tile offsets and sides stay on this grain (a ×1 RRDBNet unshuffles 4×4 blocks).</summary>
    public const int Grain = 4;

    /// <param name="rgb">The image, interleaved 8-bit RGB.</param>
    /// <param name="width">The image width.</param>
    /// <param name="height">The image height.</param>
    /// <param name="scale">The upscaler's factor per axis.</param>
    /// <param name="tiling">How big the tiles are and how much they overlap.</param>
    /// <param name="fixedHeight">The export's static input height (every tile must have it), else null.</param>
    /// <param name="fixedWidth">The export's static input width, else null.</param>
    /// <param name="run">Runs the upscaler on one tile (values in [0, 1]).</param>
    /// <param name="destination">The result, interleaved 8-bit RGB of scale·width × scale·height.</param>
    /// <param name="cancellationToken">Checked between tiles.</param>
    /// <param name="bandWritten">Told of each band of rows once it is in <paramref name="destination"/>.</param>
    public static void Run(ReadOnlySpan<byte> rgb, int width, int height, int scale, UpscaleTiling tiling, int? fixedHeight, int? fixedWidth,
        TileRun run, Span<byte> destination, CancellationToken cancellationToken, BandWritten? bandWritten = null)
    {
        int cropWidth = width * scale, cropHeight = height * scale;
        if (destination.Length != 3 * cropWidth * cropHeight)
            throw new ArgumentException($"A {cropWidth}x{cropHeight} result needs {3 * cropWidth * cropHeight} bytes, not {destination.Length}.", nameof(destination));
        int paddedWidth = RoundUp(width), paddedHeight = RoundUp(height);
        var rows = Axis.Plan(paddedHeight, tiling, fixedHeight);
        var columns = Axis.Plan(paddedWidth, tiling, fixedWidth);
        int outWidth = paddedWidth * scale, outHeight = paddedHeight * scale;
        int tileHeight = fixedHeight ?? rows.Max(r => r.Length), tileWidth = fixedWidth ?? columns.Max(c => c.Length);
        var tile = new float[3 * tileHeight * tileWidth];
        var upscaled = new float[3 * tileHeight * scale * tileWidth * scale];
        // Each column's weights across its reach, the same for every row of tiles.
        var across = columns.Select(column =>
        {
            var (x0, x1) = column.Reach(scale, outWidth);
            return Enumerable.Range(x0, x1 - x0).Select(x => column.Weight(x, scale)).ToArray();
        }).ToArray();
        int capacity = rows.Max(r => r.Reach(scale, outHeight).To - r.Reach(scale, outHeight).From);
        var band = new Band(new float[3 * capacity * outWidth], capacity, outWidth);
        for (int r = 0; r < rows.Length; r++)
        {
            var row = rows[r];
            var (top, bottom) = row.Reach(scale, outHeight);
            int h = fixedHeight ?? row.Length;
            for (int k = 0; k < columns.Length; k++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var column = columns[k];
                int w = fixedWidth ?? column.Length;
                var input = tile.AsSpan(0, 3 * h * w);
                var output = upscaled.AsSpan(0, 3 * h * scale * w * scale);
                Extract(rgb, width, height, row.Start, column.Start, h, w, input);
                run(input, h, w, output);
                band.Blend(output, w * scale, h * scale, row, column, across[k], scale, top, outWidth, outHeight);
            }
            // Rows above the next row of tiles' reach get nothing more: they leave; the cross-fade below them stays.
            int done = Math.Min(r + 1 < rows.Length ? rows[r + 1].Reach(scale, outHeight).From : outHeight, bottom);
            int leaving = Math.Min(done, cropHeight) - top;
            if (leaving > 0)
            {
                band.Write(leaving, destination.Slice(3 * top * cropWidth, 3 * leaving * cropWidth), cropWidth);
                bandWritten?.Invoke(top, leaving);
            }
            band.Shift(done - top, bottom - done);
        }
    }

    private static int RoundUp(int side) => (side + Grain - 1) / Grain * Grain;

    /// <summary>[3, tileHeight, tileWidth] values in [0, 1] of the image from (top, left); rows and columns past the image repeat its last.</summary>
    private static void Extract(ReadOnlySpan<byte> rgb, int width, int height, int top, int left, int tileHeight, int tileWidth, Span<float> tile)
    {
        int plane = tileHeight * tileWidth;
        for (int y = 0; y < tileHeight; y++)
        {
            var source = rgb.Slice(3 * Math.Min(top + y, height - 1) * width, 3 * width);
            for (int x = 0; x < tileWidth; x++)
            {
                int p = 3 * Math.Min(left + x, width - 1), t = y * tileWidth + x;
                tile[t] = source[p] / 255f;
                tile[plane + t] = source[p + 1] / 255f;
                tile[2 * plane + t] = source[p + 2] / 255f;
            }
        }
    }

    /// <summary>
    /// The output rows one row of tiles reaches, as planar floats [3, capacity, width]: row 0 is output row
    /// <c>top</c> of the row being blended. Allocated once per run and reused for every row of tiles.
    /// </summary>
    private readonly struct Band(float[] values, int capacity, int width)
    {
        /// <summary>Adds a tile's weighted values (its top-left at output row/column Start·scale) where its weight is not zero.</summary>
        public void Blend(ReadOnlySpan<float> tile, int tileWidth, int tileHeight, Axis.Tile row, Axis.Tile column, float[] across, int scale, int top,
            int outWidth, int outHeight)
        {
            var (y0, y1) = row.Reach(scale, outHeight);
            var (x0, x1) = column.Reach(scale, outWidth);
            int tileTop = row.Start * scale, tileLeft = column.Start * scale;
            for (int c = 0; c < 3; c++)
            {
                for (int y = y0; y < y1; y++)
                {
                    float down = row.Weight(y, scale);
                    if (down == 0f) continue;
                    var source = tile.Slice((c * tileHeight + y - tileTop) * tileWidth + x0 - tileLeft, x1 - x0);
                    var target = values.AsSpan((c * capacity + y - top) * width + x0, x1 - x0);
                    for (int x = 0; x < target.Length; x++)
                    {
                        target[x] += down * across[x] * source[x];
                    }
                }
            }
        }

        /// <summary>Its first <paramref name="rows"/> rows as interleaved bytes, the first <paramref name="cropWidth"/> pixels of each.</summary>
        public void Write(int rows, Span<byte> destination, int cropWidth)
        {
            for (int y = 0; y < rows; y++)
            {
                var target = destination.Slice(3 * y * cropWidth, 3 * cropWidth);
                for (int c = 0; c < 3; c++)
                {
                    var source = values.AsSpan((c * capacity + y) * width, cropWidth);
                    for (int x = 0; x < cropWidth; x++)
                    {
                        target[3 * x + c] = (byte)MathF.Round(Math.Clamp(source[x], 0f, 1f) * 255f);
                    }
                }
            }
        }

        /// <summary>Drops the first <paramref name="rows"/> rows, moves the <paramref name="kept"/> after them to the top, zeroes the rest.</summary>
        public void Shift(int rows, int kept)
        {
            for (int c = 0; c < 3; c++)
            {
                var plane = values.AsSpan(c * capacity * width, capacity * width);
                plane.Slice(rows * width, kept * width).CopyTo(plane);
                plane[(kept * width)..].Clear();
            }
        }
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
