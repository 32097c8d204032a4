using System.Buffers;
using System.Buffers.Binary;
using System.IO.Compression;
using System.Numerics.Tensors;
using System.Text;

namespace RenderFarm.Diffusion.Imaging;

/// <summary>
/// Encodes 8-bit RGB pixels as PNG: IHDR, the text chunks right after it (tEXt when the text is Latin-1, else an
/// uncompressed iTXt (UTF-8), as PIL's PngInfo.add_text does, so SD tools read it either way), one IDAT, IEND.
/// </summary>
/// <remarks>
/// <para>Every row is Sub-filtered (vectorised) and the scanlines are deflated by <see cref="ZLibStream"/> (the
/// zlib-ng inside the .NET runtime) at level <see cref="DefaultLevel"/> with the "filtered" strategy. At 512×512 this
/// takes ~14 ms against ~75–100 ms for the previous StbImageWriteSharp encoder, and the files are ~35 % smaller
/// (bench/pipeline.md, which also compares the other filters and levels); Skia's libpng encoder took ~3× as long
/// for files ~12 % smaller, so the farm keeps this one on the hot path although Skia does the rest of its imaging.</para>
/// <para>Determinism: the same pixels and text give the same bytes on the same .NET runtime build and CPU, which is
/// what the farm's reproducibility checks compare. The deflate stream is zlib-ng's, so a different .NET runtime
/// version (or, in principle, a CPU taking a different zlib-ng code path) may produce different compressed bytes for
/// the same image; the decoded pixels and the text chunks never change. Compare pixels, not file hashes, across
/// deployments.</para>
/// </remarks>
public static class PngEncoder
{
    /// <summary>zlib level used for IDAT (1–9). 3: level 1 (zlib-ng's deflate_quick, static Huffman trees) is ~25 %
    /// faster but ~60 % larger; 4–6 take as long for no gain; 9 is several times slower for ~10 % (bench/pipeline.md).</summary>
    internal const int DefaultLevel = 3;

    private static readonly Encoding Latin1 = Encoding.GetEncoding("ISO-8859-1", EncoderFallback.ExceptionFallback, DecoderFallback.ExceptionFallback);

    /// <summary>PNG of <paramref name="rgb"/> (width·height·3 bytes, rows top to bottom) with the given text chunks.</summary>
    public static byte[] Encode(byte[] rgb, int width, int height, IEnumerable<KeyValuePair<string, string>>? text = null)
    {
        ArgumentNullException.ThrowIfNull(rgb);
        return Encode(rgb.AsSpan(), width, height, text);
    }

    /// <inheritdoc cref="Encode(byte[], int, int, IEnumerable{KeyValuePair{string, string}}?)"/>
    public static byte[] Encode(ReadOnlySpan<byte> rgb, int width, int height, IEnumerable<KeyValuePair<string, string>>? text = null) =>
        Encode(rgb, width, height, text, DefaultFilter, DefaultLevel, ZLibCompressionStrategy.Filtered);

    /// <summary>Sub on every row: vectorised, no dependence on the row above; within ~3 % of the adaptive choice's size
    /// at a third of its time (bench/pipeline.md).</summary>
    internal const RowFilter DefaultFilter = RowFilter.Sub;

    /// <summary>Row filter choice (bench/PipelineBench compares them; the public overload uses <see cref="DefaultFilter"/>).</summary>
    internal enum RowFilter { None = 0, Sub = 1, Up = 2, Average = 3, Paeth = 4, Adaptive = 5 }

    internal static byte[] Encode(ReadOnlySpan<byte> rgb, int width, int height, IEnumerable<KeyValuePair<string, string>>? text,
        RowFilter filter, int level, ZLibCompressionStrategy strategy)
    {
        if (width < 1 || height < 1 || rgb.Length != checked(width * height * 3))
        {
            throw new ArgumentException($"Expected {width}x{height}x3 bytes, got {rgb.Length}.", nameof(rgb));
        }
        int stride = width * 3;
        int filteredLength = height * (stride + 1);
        // Scratch from the shared pools: the filtered rows and the file as it is assembled; only the result is new.
        var filtered = ArrayPool<byte>.Shared.Rent(filteredLength);
        try
        {
            Filter(rgb, stride, height, filter, filtered.AsSpan(0, filteredLength));
            using var output = new PooledBuffer(filteredLength / 2 + 1024);
            output.Write(PngMetadata.Signature);
            Span<byte> header = stackalloc byte[13];
            BinaryPrimitives.WriteUInt32BigEndian(header, (uint)width);
            BinaryPrimitives.WriteUInt32BigEndian(header[4..], (uint)height);
            header[8] = 8;  // bit depth
            header[9] = 2;  // colour type: RGB
            header[10] = 0; // deflate
            header[11] = 0; // adaptive filtering
            header[12] = 0; // not interlaced
            WriteChunk(output, "IHDR", header);
            foreach (var (keyword, value) in text ?? [])
            {
                WriteTextChunk(output, keyword, value);
            }

            // IDAT: length and type, the zlib stream deflated straight after them, then the length patched and the CRC.
            int idatStart = (int)output.Position;
            output.Write([0, 0, 0, 0, (byte)'I', (byte)'D', (byte)'A', (byte)'T']);
            using (var zlib = new ZLibStream(output, new ZLibCompressionOptions { CompressionLevel = level, CompressionStrategy = strategy }, leaveOpen: true))
            {
                zlib.Write(filtered, 0, filteredLength);
            }
            int dataLength = (int)output.Position - idatStart - 8;
            var written = output.Written;
            BinaryPrimitives.WriteUInt32BigEndian(written.Slice(idatStart, 4), (uint)dataLength);
            Span<byte> crc = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(crc, System.IO.Hashing.Crc32.HashToUInt32(written.Slice(idatStart + 4, 4 + dataLength)));
            output.Write(crc);
            WriteChunk(output, "IEND", []);
            return output.Written.ToArray();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(filtered);
        }
    }

    /// <summary>
    /// The filtered scanlines (filter byte + row) of 3-byte pixels. Adaptive: per row, the filter with the smallest
    /// sum of |signed residual| (the first row only compares None and Sub; Up/Paeth would see a zero row above).
    /// </summary>
    private static void Filter(ReadOnlySpan<byte> rgb, int stride, int height, RowFilter mode, Span<byte> result)
    {
        Span<byte> zero = mode is RowFilter.Up or RowFilter.Average or RowFilter.Paeth or RowFilter.Adaptive ? new byte[stride] : [];
        Span<byte> scratch = mode == RowFilter.Adaptive ? new byte[5 * stride] : [];
        for (int y = 0; y < height; y++)
        {
            ReadOnlySpan<byte> row = rgb.Slice(y * stride, stride);
            ReadOnlySpan<byte> above = y == 0 ? zero : rgb.Slice((y - 1) * stride, stride);
            var destination = result.Slice(y * (stride + 1), stride + 1);
            if (mode != RowFilter.Adaptive)
            {
                destination[0] = (byte)mode;
                Apply(mode, row, above, destination[1..]);
                continue;
            }
            int best = 0;
            long bestSum = long.MaxValue;
            int last = y == 0 ? (int)RowFilter.Sub : (int)RowFilter.Paeth;
            for (int f = 0; f <= last; f++)
            {
                var candidate = scratch.Slice(f * stride, stride);
                Apply((RowFilter)f, row, above, candidate);
                long sum = SumAbs(candidate);
                if (sum < bestSum)
                {
                    bestSum = sum;
                    best = f;
                }
            }
            destination[0] = (byte)best;
            scratch.Slice(best * stride, stride).CopyTo(destination[1..]);
        }
    }

    private static void Apply(RowFilter filter, ReadOnlySpan<byte> row, ReadOnlySpan<byte> above, Span<byte> destination)
    {
        const int bpp = 3;
        int n = row.Length;
        switch (filter)
        {
            case RowFilter.None:
                row.CopyTo(destination);
                break;
            case RowFilter.Sub:
                row[..bpp].CopyTo(destination);
                TensorPrimitives.Subtract(row[bpp..], row[..(n - bpp)], destination[bpp..]); // wraps mod 256
                break;
            case RowFilter.Up:
                TensorPrimitives.Subtract(row, above, destination);
                break;
            case RowFilter.Average:
                for (int x = 0; x < bpp; x++) destination[x] = (byte)(row[x] - (above[x] >> 1));
                for (int x = bpp; x < n; x++) destination[x] = (byte)(row[x] - ((row[x - bpp] + above[x]) >> 1));
                break;
            case RowFilter.Paeth:
                for (int x = 0; x < bpp; x++) destination[x] = (byte)(row[x] - above[x]);
                for (int x = bpp; x < n; x++)
                {
                    int a = row[x - bpp], b = above[x], c = above[x - bpp];
                    int pa = Math.Abs(b - c), pb = Math.Abs(a - c), pc = Math.Abs(a + b - 2 * c);
                    int predictor = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
                    destination[x] = (byte)(row[x] - predictor);
                }
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(filter));
        }
    }

    /// <summary>Σ |(sbyte)v|, the minimum-sum-of-absolute-differences heuristic.</summary>
    private static long SumAbs(ReadOnlySpan<byte> values)
    {
        long sum = 0;
        foreach (var v in values)
        {
            int s = (sbyte)v;
            sum += s < 0 ? -s : s;
        }
        return sum;
    }

    /// <summary>Inserts text chunks after IHDR of an existing PNG.</summary>
    public static byte[] InsertTextChunks(byte[] png, IEnumerable<KeyValuePair<string, string>> text)
    {
        const int ihdrEnd = 8 + 4 + 4 + 13 + 4; // signature, length, type, 13 data bytes, CRC
        if (png.Length < ihdrEnd || !png.AsSpan(0, 8).SequenceEqual(RenderFarm.Diffusion.PngMetadata.Signature) || Encoding.ASCII.GetString(png, 12, 4) != "IHDR")
        {
            throw new ArgumentException("Not a PNG starting with IHDR.", nameof(png));
        }
        using var output = new MemoryStream(png.Length + 256);
        output.Write(png, 0, ihdrEnd);
        foreach (var (keyword, value) in text)
        {
            WriteTextChunk(output, keyword, value);
        }
        output.Write(png, ihdrEnd, png.Length - ihdrEnd);
        return output.ToArray();
    }

    private static void WriteTextChunk(Stream output, string keyword, string value)
    {
        if (keyword.Length is 0 or > 79 || !IsLatin1(keyword) || keyword.Contains('\0'))
        {
            throw new ArgumentException($"'{keyword}' is not a valid PNG text keyword (1–79 Latin-1 characters).", nameof(keyword));
        }
        var data = new MemoryStream();
        var keywordBytes = Latin1.GetBytes(keyword);
        data.Write(keywordBytes);
        data.WriteByte(0);
        string type;
        if (IsLatin1(value) && !value.Contains('\0'))
        {
            type = "tEXt";
            data.Write(Latin1.GetBytes(value));
        }
        else
        {
            type = "iTXt";
            data.WriteByte(0); // not compressed
            data.WriteByte(0); // compression method
            data.WriteByte(0); // empty language tag
            data.WriteByte(0); // empty translated keyword
            data.Write(Encoding.UTF8.GetBytes(value));
        }
        WriteChunk(output, type, data.GetBuffer().AsSpan(0, (int)data.Length));
    }

    internal static void WriteChunk(Stream output, string type, ReadOnlySpan<byte> data)
    {
        Span<byte> header = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32BigEndian(header, (uint)data.Length);
        Encoding.ASCII.GetBytes(type, header[4..]);
        output.Write(header);
        output.Write(data);
        var crc = new System.IO.Hashing.Crc32();
        crc.Append(header[4..]);
        crc.Append(data);
        Span<byte> crcBytes = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(crcBytes, crc.GetCurrentHashAsUInt32());
        output.Write(crcBytes);
    }

    private static bool IsLatin1(string s)
    {
        foreach (var c in s)
        {
            if (c > 0xff) return false;
        }
        return true;
    }

    /// <summary>A write-only stream over arrays rented from the shared pool (grown by renting a larger one).</summary>
    private sealed class PooledBuffer(int capacity) : Stream
    {
        private byte[] _buffer = ArrayPool<byte>.Shared.Rent(capacity);
        private int _length;

        public Span<byte> Written => _buffer.AsSpan(0, _length);

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => _length;
        public override long Position { get => _length; set => throw new NotSupportedException(); }

        public override void Write(byte[] data, int offset, int count) => Write(data.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> data)
        {
            if (data.Length > _buffer.Length - _length)
            {
                var larger = ArrayPool<byte>.Shared.Rent(checked(Math.Max(2 * _buffer.Length, _length + data.Length)));
                Written.CopyTo(larger);
                ArrayPool<byte>.Shared.Return(_buffer);
                _buffer = larger;
            }
            data.CopyTo(_buffer.AsSpan(_length));
            _length += data.Length;
        }

        public override void WriteByte(byte value) => Write([value]);
        public override void Flush() { }
        public override int Read(byte[] data, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (_buffer.Length > 0)
            {
                ArrayPool<byte>.Shared.Return(_buffer);
                _buffer = [];
            }
            base.Dispose(disposing);
        }
    }
}
