using System.IO.Compression;
using System.IO.Pipelines;
using Grpc.Core;
using Microsoft.AspNetCore.Http.Features;
using Grpc.Net.Compression;
using RenderFarm.Coordinator.Diagnostics;

namespace RenderFarm.Coordinator.Security;

/// <summary>
/// Malformed gRPC framing is the caller's error. grpc-dotnet answers most of it itself (INTERNAL "Incomplete message",
/// RESOURCE_EXHAUSTED for an oversized length), but a message header whose compressed flag is neither 0 nor 1, or a
/// gzip body that does not decompress, surfaces as an unexpected exception: UNKNOWN for the caller and an error with a
/// stack trace in our log, per request. These two wrappers turn both into INVALID_ARGUMENT "malformed request: …" and
/// one throttled warning.
/// </summary>
public static class GrpcFraming
{
    private static RpcException Malformed(ThrottledLog log, string what)
    {
        log.Warn("framing", $"Malformed gRPC request refused: {what}");
        return new RpcException(new Status(StatusCode.InvalidArgument, $"malformed request: {what}"));
    }

    /// <summary>Compression providers whose decompression failures are INVALID_ARGUMENT.</summary>
    public static IList<ICompressionProvider> GuardedProviders(ThrottledLog log) =>
        [new GuardedCompression(new GzipCompressionProvider(CompressionLevel.Fastest), log)];

    /// <summary>
    /// Reads <paramref name="context"/>'s gRPC request body through <see cref="ValidatingStream"/>. gRPC reads the body
    /// as a pipe: the pipe over the replaced stream is made here with 64 KiB reads, where ASP.NET's default (4 KiB)
    /// would take ~100 reads through every stream layer for each 0.4 MB result a worker sends.
    /// </summary>
    public static void Validate(HttpContext context, ThrottledLog log)
    {
        var body = new ValidatingStream(context.Request.Body, log);
        context.Request.Body = body;
        context.Features.Set<IRequestBodyPipeFeature>(new BodyPipe(PipeReader.Create(body,
            new StreamPipeReaderOptions(bufferSize: 64 * 1024, minimumReadSize: 16 * 1024, leaveOpen: true))));
    }

    private sealed class BodyPipe(PipeReader reader) : IRequestBodyPipeFeature
    {
        public PipeReader Reader => reader;
    }

    /// <summary>
    /// A request body read through a check of each gRPC message header (1 flag byte, 4 length bytes): a flag other than
    /// 0 or 1 stops the read with INVALID_ARGUMENT. Bytes pass through unchanged.
    /// </summary>
    internal sealed class ValidatingStream(Stream inner, ThrottledLog log) : ReadOnlyWrapper(inner)
    {
        private int _headerBytes;   // bytes of the current message header seen so far
        private uint _length;       // the current message's length, as its header says
        private long _payloadLeft;  // bytes of the current message still to pass

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var read = await Inner.ReadAsync(buffer, cancellationToken);
            Inspect(buffer.Span[..read]);
            return read;
        }

        public override int Read(byte[] buffer, int offset, int count)
        {
            var read = Inner.Read(buffer, offset, count);
            Inspect(buffer.AsSpan(offset, read));
            return read;
        }

        private void Inspect(ReadOnlySpan<byte> data)
        {
            var i = 0;
            while (i < data.Length)
            {
                if (_payloadLeft > 0)
                {
                    var skip = (int)Math.Min(_payloadLeft, data.Length - i);
                    i += skip;
                    _payloadLeft -= skip;
                    continue;
                }
                var b = data[i++];
                if (_headerBytes == 0)
                {
                    if (b > 1) throw Malformed(log, $"a message header's compressed flag is {b} (0 or 1 allowed)");
                    _length = 0;
                }
                else _length = (_length << 8) | b;
                if (++_headerBytes == 5)
                {
                    _headerBytes = 0;
                    _payloadLeft = _length;
                }
            }
        }
    }

    private sealed class GuardedCompression(ICompressionProvider inner, ThrottledLog log) : ICompressionProvider
    {
        public string EncodingName => inner.EncodingName;

        public Stream CreateCompressionStream(Stream stream, CompressionLevel? compressionLevel) =>
            inner.CreateCompressionStream(stream, compressionLevel);

        public Stream CreateDecompressionStream(Stream stream) => new GuardedDecompression(inner.CreateDecompressionStream(stream), inner.EncodingName, log);
    }

    private sealed class GuardedDecompression(Stream inner, string encoding, ThrottledLog log) : ReadOnlyWrapper(inner)
    {
        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            try { return await Inner.ReadAsync(buffer, cancellationToken); }
            catch (InvalidDataException e) { throw Malformed(log, $"the {encoding}-compressed message does not decompress ({e.Message})"); }
        }

        public override int Read(byte[] buffer, int offset, int count)
        {
            try { return Inner.Read(buffer, offset, count); }
            catch (InvalidDataException e) { throw Malformed(log, $"the {encoding}-compressed message does not decompress ({e.Message})"); }
        }
    }

    /// <summary>A read-only pass-through of <paramref name="inner"/>, which it owns.</summary>
    internal abstract class ReadOnlyWrapper(Stream inner) : Stream
    {
        protected Stream Inner { get; } = inner;

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing) Inner.Dispose();
            base.Dispose(disposing);
        }
    }
}
