// What the coordinator spends per 512² result, piece by piece (bench/farm-overhead.md, "coordinator CPU"): the
// textured synthetic PNG a worker sends (SyntheticRenderer, ~0.43 MB), measured in CPU time of this process
// (CLOCK_PROCESS_CPUTIME_ID: other processes on a loaded machine do not count; the store's write on the thread pool
// does), median of N runs after warm-up.
//
//   ResultCheckBench [--size 512] [--runs 200]
using System.Buffers;
using System.Globalization;
using System.IO.Compression;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Google.Protobuf;
using RenderFarm.Coordinator.Jobs;
using RenderFarm.Coordinator.Storage;
using RenderFarm.Diffusion;
using RenderFarm.Imaging;
using RenderFarm.Protocol;
using RenderFarm.Worker;

var options = args.Select((a, i) => (a, i)).Where(p => p.a.StartsWith("--", StringComparison.Ordinal))
    .ToDictionary(p => p.a[2..], p => args[p.i + 1]);
int size = int.Parse(options.GetValueOrDefault("size", "512"), CultureInfo.InvariantCulture);
int runs = int.Parse(options.GetValueOrDefault("runs", "200"), CultureInfo.InvariantCulture);

var renderer = new SyntheticRenderer(TimeSpan.Zero, textured: true);
var request = new GenerationRequest([.. Enumerable.Range(0, 8).Select(i => new ImagePrompt($"bench prompt {i}", "", i + 1))],
    size, size, 4, 7.5f, "euler", "bench");
var images = await renderer.RenderAsync(request, new Progress<RenderFarm.Diffusion.StepProgress>(_ => { }), CancellationToken.None);
var png = images[0].Png;
var p = new GenerationParams { Width = (uint)size, Height = (uint)size, Steps = 4, Model = "bench" };
var results = new ShardResults { Shard = new ShardRef { JobId = "bench", ShardIndex = 0 } };
foreach (var (image, i) in images.Select((m, i) => (m, i)))
    results.Images.Add(new ShardImage { Index = (uint)i, Png = ByteString.CopyFrom(image.Png), RenderSeconds = 0.08 });
var message = new WorkerMessage { Results = results }.ToByteArray();
var root = Directory.CreateTempSubdirectory("result-check-bench").FullName;
var store = new FileSystemResultStore(root);
var rawLength = (size * 3 + 1) * size;
var raw = new byte[rawLength];
var n = 0;

Console.WriteLine($"PNG {png.Length} bytes ({size}x{size}, {rawLength} bytes of rows), {runs} runs, median CPU ms per image:");
Measure("ResultCheck.Problem (what the coordinator runs)", () => { if (ResultCheck.Problem(png, p) is { } problem) throw new InvalidOperationException(problem); });
Measure("PngVerifier.TryVerify", () => _ = PngVerifier.TryVerify(png, (long)size * size));
Measure("inflate alone: ZLibStream into one buffer", () => Inflate(png, raw));
Measure("CRC-32 of the whole file", () => _ = System.IO.Hashing.Crc32.HashToUInt32(png));
Measure("SHA-256 of the file", () => _ = SHA256.HashData(png));
Measure("WorkerMessage parse (8 images), per image", () => _ = WorkerMessage.Parser.ParseFrom(message), perCall: 8);
Measure("FileSystemResultStore.PutIfAbsentAsync", () => _ = store.PutIfAbsentAsync("bench", (uint)n++, png, CancellationToken.None).GetAwaiter().GetResult());
Directory.Delete(root, recursive: true);

void Measure(string what, Action action, int perCall = 1)
{
    for (var i = 0; i < 20; i++) action();
    var samples = new double[runs];
    for (var i = 0; i < runs; i++)
    {
        var start = ProcessCpu();
        action();
        samples[i] = (ProcessCpu() - start) / perCall;
    }
    Array.Sort(samples);
    Console.WriteLine(FormattableString.Invariant($"  {what,-52} {samples[runs / 2] * 1e3,7:F3}  (min {samples[0] * 1e3:F3})"));
}

static void Inflate(byte[] png, byte[] into)
{
    // The IDAT chunk of the encoder's layout: IHDR, text chunks, one IDAT.
    var at = 8;
    while (System.Text.Encoding.ASCII.GetString(png, at + 4, 4) != "IDAT") at += 12 + System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(at));
    var length = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(at));
    using var zlib = new ZLibStream(new MemoryStream(png, at + 8, length), CompressionMode.Decompress);
    zlib.ReadExactly(into);
}

static double ProcessCpu()
{
    if (clock_gettime(2 /* CLOCK_PROCESS_CPUTIME_ID */, out var t) != 0) throw new InvalidOperationException("clock_gettime");
    return t.Seconds + t.Nanoseconds * 1e-9;
}

[DllImport("libc", EntryPoint = "clock_gettime")]
static extern int clock_gettime(int clock, out TimeSpec time);

[StructLayout(LayoutKind.Sequential)]
struct TimeSpec { public long Seconds; public long Nanoseconds; }
