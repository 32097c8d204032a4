// What carrying a finished PNG to the coordinator costs the RECEIVING process, in CPU time (user + system, getrusage of
// the server process: the client's CPU does not count) per image, for the same N random (incompressible) ~0.43 MB
// images sent eight ways (bench/farm-overhead.md, "Where the coordinator's time goes", "The result path alone"):
//   A  gRPC client stream over h2c, messages `Batch { repeated bytes images }` of 8 images (as a worker sends a shard);
//      the server writes each image to a new temp file (File.WriteAllBytesAsync) and hashes it (SHA256.HashData), as
//      FileSystemResultStore does.
//   B  HTTP/2 (h2c) PUT per image, 8 in flight on one connection; the server streams Request.BodyReader's segments into
//      an IncrementalHash and the file (one pwritev per 128 KiB gathered, RandomAccess.Write): no protobuf, no
//      whole-image byte[].
//   C  B over HTTP/1.1, 8 connections.
//   D  A with the parse only (no file, no hash): the transport alone.
//   E  B with the file write but no hash.
//   F  B with one pwrite per segment as Kestrel hands them over (4 KB blocks), the naive streamed loop.
//   G  B with the body read and dropped (no file, no hash): the PUT's transport alone, to set against D.
//   H  G over HTTP/1.1.
// The client starts the server as a child process (same executable, `server` argument), warms every way up, then runs
// ROUNDS measured passes of each, interleaved and rotated every round, and asks the server for its CPU time (GET
// /stats) just before and after each pass. Kestrel's and gRPC's limits are their defaults (HTTP/2 windows, 16 KB frames)
// but the 64 MiB message size, and the server runs server GC, as the coordinator does.
//
//   dotnet run -c Release --project bench/ResultTransportBench -- [--images 512] [--rounds 3] [--warmup 2]
//       [--bytes 430000] [--batch 8] [--inflight 8] [--chunk 131072]
//       [--ways ABCDEFGH]
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using RenderFarm.ResultTransportBench;

if (args.Length > 0 && args[0] == "server")
    await BenchServer.RunAsync(Options.Parse(args[1..]));
else
    await BenchClient.RunAsync(Options.Parse(args));

namespace RenderFarm.ResultTransportBench
{
    sealed record Options(Dictionary<string, string> Values)
    {
        public static Options Parse(string[] args) => new(args.Select((a, i) => (a, i))
            .Where(p => p.a.StartsWith("--", StringComparison.Ordinal) && p.i + 1 < args.Length)
            .ToDictionary(p => p.a[2..], p => args[p.i + 1]));

        public int Int(string name, int fallback) =>
            Values.TryGetValue(name, out var v) ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;

        public string Text(string name, string fallback) => Values.GetValueOrDefault(name, fallback);
    }

    /// <summary>CPU time of this process, user and system apart, in ms (µs resolution, unlike the 10 ms clock ticks
    /// Process.TotalProcessorTime reads from /proc; the passes of the cheap ways take only ~100 ms of CPU).</summary>
    static partial class ProcessCpu
    {
        [LibraryImport("libc", EntryPoint = "getrusage", SetLastError = true)]
        private static unsafe partial int GetRusage(int who, long* usage);

        public static unsafe (double UserMs, double SysMs) Now()
        {
            // struct rusage on x86-64/arm64 Linux: ru_utime, ru_stime (timeval: seconds, microseconds), 14 longs more.
            long* usage = stackalloc long[18];
            if (GetRusage(0 /* RUSAGE_SELF */, usage) != 0) throw new InvalidOperationException($"getrusage: {Marshal.GetLastPInvokeError()}");
            return (usage[0] * 1e3 + usage[1] / 1e3, usage[2] * 1e3 + usage[3] / 1e3);
        }
    }

    /// <summary>The folder the server writes into; emptied by the client between passes (outside the measurement).</summary>
    sealed class Store(string root)
    {
        private long _next;

        public string NextPath() => Path.Combine(root, $"{Interlocked.Increment(ref _next):D8}.png");

        /// <summary>What the coordinator does with a result held in memory (FileSystemResultStore.PutIfAbsentAsync).</summary>
        public async Task WriteAndHashAsync(ReadOnlyMemory<byte> png)
        {
            await File.WriteAllBytesAsync(NextPath(), png);
            _ = Convert.ToHexStringLower(SHA256.HashData(png.Span));
        }

        public void Clean()
        {
            foreach (var file in Directory.EnumerateFiles(root)) File.Delete(file);
        }
    }

    /// <summary>How the PUT bodies arrived: ReadAsync results and file writes, summed over all requests.</summary>
    static class Counters
    {
        public static long Reads;
        public static long Writes;
    }

    sealed class TransportService(Store store) : Transport.TransportBase
    {
        public override async Task<Ack> Upload(IAsyncStreamReader<Batch> requestStream, ServerCallContext context)
        {
            uint count = 0;
            while (await requestStream.MoveNext(context.CancellationToken))
                foreach (var image in requestStream.Current.Images)
                {
                    await store.WriteAndHashAsync(image.Memory);
                    count++;
                }
            return new Ack { Count = count };
        }

        public override async Task<Ack> UploadParseOnly(IAsyncStreamReader<Batch> requestStream, ServerCallContext context)
        {
            uint count = 0;
            while (await requestStream.MoveNext(context.CancellationToken))
                count += (uint)requestStream.Current.Images.Count;
            return new Ack { Count = count };
        }
    }

    static class BenchServer
    {
        public static async Task RunAsync(Options options)
        {
            var root = Directory.CreateTempSubdirectory("result-transport-bench").FullName;
            var store = new Store(root);
            var builder = WebApplication.CreateBuilder();
            // Per-request log lines would be measured as transport cost; the coordinator logs Microsoft.* at Warning.
            builder.Logging.SetMinimumLevel(LogLevel.Warning);
            builder.WebHost.ConfigureKestrel(k =>
            {
                k.Listen(IPAddress.Loopback, options.Int("h2", 0), o => o.Protocols = HttpProtocols.Http2);
                k.Listen(IPAddress.Loopback, options.Int("h1", 0), o => o.Protocols = HttpProtocols.Http1);
            });
            builder.Services.AddGrpc(o => o.MaxReceiveMessageSize = 64 * 1024 * 1024);
            builder.Services.AddSingleton(store);
            var app = builder.Build();
            app.MapGrpcService<TransportService>();
            var chunk = options.Int("chunk", 128 * 1024);
            app.MapPut("/put", new RequestDelegate(context => PutAsync(context, store, hash: true, chunk)));
            app.MapPut("/put-nohash", new RequestDelegate(context => PutAsync(context, store, hash: false, chunk)));
            app.MapPut("/put-per-segment", new RequestDelegate(context => PutAsync(context, store, hash: true, chunk: 0)));
            app.MapPut("/put-drain", new RequestDelegate(context => PutAsync(context, null, hash: false, chunk)));
            app.MapGet("/stats", () =>
            {
                var (user, sys) = ProcessCpu.Now();
                return string.Join(' ', new double[] { user, sys, GC.CollectionCount(0), GC.CollectionCount(1),
                    GC.CollectionCount(2), GC.GetTotalAllocatedBytes(),
                    Interlocked.Read(ref Counters.Reads), Interlocked.Read(ref Counters.Writes) }.Select(v => v.ToString("R", CultureInfo.InvariantCulture)));
            });
            app.MapGet("/info", () => $"server GC {GCSettings.IsServerGC}, {RuntimeInformation.FrameworkDescription}, " +
                $"{Environment.ProcessorCount} CPUs, files in {root}");
            // Between passes: the files go, and a full GC so that each pass starts from the same heap and pays for the
            // collections its own garbage brings (it is called outside the measured window).
            app.MapPost("/clean", () =>
            {
                store.Clean();
                GC.Collect();
                GC.WaitForPendingFinalizers();
                return "ok";
            });
            await app.StartAsync();
            Console.WriteLine("ready");
            // The client holds our stdin: when it closes (the client finished or died), stop.
            await Console.In.ReadToEndAsync();
            await app.StopAsync();
            Directory.Delete(root, recursive: true);
        }

        /// <summary>B, C, E–H: the body goes to the file and the hash as Kestrel hands it over, never whole in one
        /// buffer. Kestrel's segments are 4 KB blocks; a pwrite each (F, <paramref name="chunk"/> 0) is ~105 system
        /// calls per image, so B, C, E let up to <paramref name="chunk"/> bytes gather in the request pipe (it holds them
        /// anyway: HTTP/2's stream window, HTTP/1.1's request buffer) and write them with one pwritev.</summary>
        private static async Task PutAsync(HttpContext context, Store? store, bool hash, int chunk)
        {
            using var file = store is null ? null : File.OpenHandle(store.NextPath(), FileMode.CreateNew, FileAccess.Write);
            using var sha = hash ? IncrementalHash.CreateHash(HashAlgorithmName.SHA256) : null;
            var reader = context.Request.BodyReader;
            var gathered = new List<ReadOnlyMemory<byte>>();
            long offset = 0;
            while (true)
            {
                var result = await reader.ReadAsync(context.RequestAborted);
                var buffer = result.Buffer;
                Interlocked.Increment(ref Counters.Reads);
                if (buffer.Length < chunk && !result.IsCompleted)
                {
                    reader.AdvanceTo(buffer.Start, buffer.End); // nothing consumed yet: wake me when more has come
                    continue;
                }
                gathered.Clear();
                var position = offset;
                foreach (var segment in buffer)
                {
                    sha?.AppendData(segment.Span);
                    // Synchronous: a write into the page cache; RandomAccess.WriteAsync on Linux only queues the
                    // same call to the thread pool.
                    if (file is null) continue;
                    if (chunk == 0) RandomAccess.Write(file, segment.Span, position);
                    else gathered.Add(segment);
                    position += segment.Length;
                    if (chunk == 0) Interlocked.Increment(ref Counters.Writes);
                }
                if (file is not null && gathered.Count > 0)
                {
                    RandomAccess.Write(file, gathered, offset);
                    Interlocked.Increment(ref Counters.Writes);
                }
                offset += buffer.Length;
                reader.AdvanceTo(buffer.End);
                if (result.IsCompleted) break;
            }
            if (sha is not null) _ = Convert.ToHexStringLower(sha.GetHashAndReset());
            if (offset == context.Request.ContentLength) context.Response.StatusCode = StatusCodes.Status204NoContent;
            else
            {
                context.Response.StatusCode = StatusCodes.Status400BadRequest;
                await context.Response.WriteAsync($"read {offset} bytes of {context.Request.ContentLength}");
            }
        }
    }

    static class BenchClient
    {
        private sealed record Pass(double UserMs, double SysMs, double WallS, double Gcs, double Gen2, double AllocMb,
            double Reads, double Writes);

        public static async Task RunAsync(Options options)
        {
            int n = options.Int("images", 512), rounds = options.Int("rounds", 3), warmup = options.Int("warmup", 2);
            int bytes = options.Int("bytes", 430_000), batchSize = options.Int("batch", 8), inflight = options.Int("inflight", 8);
            var ways = options.Text("ways", "ABCDEFGH").ToUpperInvariant().ToCharArray();

            Console.WriteLine($"{DateTimeOffset.Now:yyyy-MM-dd HH:mm:ss zzz}  loadavg {File.ReadAllText("/proc/loadavg").Trim()}");
            Console.WriteLine($"{n} images of {bytes} random bytes per pass, {warmup} warm-up + {rounds} measured passes per way, " +
                $"gRPC batches of {batchSize}, {inflight} PUTs in flight, " +
                $"PUT writes gathered to {options.Int("chunk", 128 * 1024)} bytes");

            // Distinct random buffers, cycled: nothing on any path compresses or caches, so 64 of them stand for N.
            var images = Enumerable.Range(0, Math.Min(n, 64)).Select(_ => RandomNumberGenerator.GetBytes(bytes)).ToArray();
            var batches = Enumerable.Range(0, (n + batchSize - 1) / batchSize).Select(b =>
            {
                var batch = new Batch();
                for (var i = b * batchSize; i < Math.Min(n, (b + 1) * batchSize); i++)
                    batch.Images.Add(UnsafeByteOperations.UnsafeWrap(images[i % images.Length]));
                return batch;
            }).ToArray();

            int h2Port = FreePort(), h1Port = FreePort();
            using var server = StartServer(h2Port, h1Port, options.Int("chunk", 128 * 1024));
            using var control = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{h1Port}") };
            Console.WriteLine($"server pid {server.Id}: {await control.GetStringAsync("/info")}");

            using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{h2Port}", new GrpcChannelOptions
            {
                HttpHandler = new SocketsHttpHandler(),
                MaxSendMessageSize = 64 * 1024 * 1024,
                MaxReceiveMessageSize = 64 * 1024 * 1024,
            });
            var grpc = new Transport.TransportClient(channel);
            // h2c by prior knowledge: an http:// URI with HTTP/2 demanded exactly.
            using var h2 = new HttpClient(new SocketsHttpHandler())
            {
                DefaultRequestVersion = HttpVersion.Version20, DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
            };
            using var h1 = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = inflight })
            {
                DefaultRequestVersion = HttpVersion.Version11, DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
            };

            Func<Task> Way(char way) => way switch
            {
                'A' => () => GrpcPass(grpc.Upload(), batches, n),
                'D' => () => GrpcPass(grpc.UploadParseOnly(), batches, n),
                'B' => () => PutPass(h2, new Uri($"http://127.0.0.1:{h2Port}/put"), images, n, inflight),
                'C' => () => PutPass(h1, new Uri($"http://127.0.0.1:{h1Port}/put"), images, n, inflight),
                'E' => () => PutPass(h2, new Uri($"http://127.0.0.1:{h2Port}/put-nohash"), images, n, inflight),
                'F' => () => PutPass(h2, new Uri($"http://127.0.0.1:{h2Port}/put-per-segment"), images, n, inflight),
                'G' => () => PutPass(h2, new Uri($"http://127.0.0.1:{h2Port}/put-drain"), images, n, inflight),
                'H' => () => PutPass(h1, new Uri($"http://127.0.0.1:{h1Port}/put-drain"), images, n, inflight),
                _ => throw new ArgumentException($"unknown way {way}"),
            };

            for (var w = 0; w < warmup; w++)
                foreach (var way in ways) await Measure(control, Way(way));

            // The server's floor: its CPU over a second of doing nothing.
            var idleStart = await Stats(control);
            await Task.Delay(1000);
            var idle = await Stats(control);
            Console.WriteLine($"server idle: {idle[0] + idle[1] - idleStart[0] - idleStart[1]:F1} ms CPU in 1 s");

            var results = ways.ToDictionary(w => w, _ => new List<Pass>());
            for (var r = 0; r < rounds; r++)
                for (var k = 0; k < ways.Length; k++)
                {
                    var way = ways[(k + r) % ways.Length];
                    results[way].Add(await Measure(control, Way(way)));
                }

            var mb = (double)n * bytes / 1e6;
            Console.WriteLine();
            Console.WriteLine($"server CPU ms per image (user+sys), per round; median; wall s, MB/s, GCs per pass, MB allocated and (PUT) body reads and file writes per image, at the median");
            foreach (var way in ways)
            {
                var passes = results[way];
                var perImage = passes.Select(p => (p.UserMs + p.SysMs) / n).ToList();
                var median = passes.OrderBy(p => p.UserMs + p.SysMs).ElementAt(passes.Count / 2);
                Console.WriteLine($"{way} {Describe(way),-34} rounds {string.Join(" ", perImage.Select(v => v.ToString("F3", CultureInfo.InvariantCulture)))}" +
                    $"  median {(median.UserMs + median.SysMs) / n:F3} (user {median.UserMs / n:F3}, sys {median.SysMs / n:F3})" +
                    $"  wall {median.WallS:F2} s, {mb / median.WallS:F0} MB/s, GCs {median.Gcs} (gen2 {median.Gen2}), alloc {median.AllocMb / n:F2} MB/image" +
                    (median.Reads > 0 ? $", {median.Reads / n:F0} reads and {median.Writes / n:F0} writes/image" : ""));
            }
            Console.WriteLine($"{DateTimeOffset.Now:yyyy-MM-dd HH:mm:ss zzz}  loadavg {File.ReadAllText("/proc/loadavg").Trim()}");
            await control.PostAsync("/clean", null);
            server.StandardInput.Close();
            await server.WaitForExitAsync();
        }

        private static string Describe(char way) => way switch
        {
            'A' => "gRPC h2c, 8/msg, file+SHA-256",
            'B' => "PUT h2c streamed, file+SHA-256",
            'C' => "PUT HTTP/1.1 streamed, file+SHA-256",
            'D' => "gRPC h2c, 8/msg, parse only",
            'E' => "PUT h2c streamed, file only",
            'F' => "PUT h2c, pwrite per 4 KB segment",
            'G' => "PUT h2c, body dropped",
            'H' => "PUT HTTP/1.1, body dropped",
            _ => "?",
        };

        private static async Task<Pass> Measure(HttpClient control, Func<Task> pass)
        {
            (await control.PostAsync("/clean", null)).EnsureSuccessStatusCode();
            var before = await Stats(control);
            var clock = Stopwatch.StartNew();
            await pass();
            var wall = clock.Elapsed.TotalSeconds;
            var after = await Stats(control);
            return new Pass(after[0] - before[0], after[1] - before[1], wall,
                after[2] - before[2], after[4] - before[4], (after[5] - before[5]) / 1e6, after[6] - before[6], after[7] - before[7]);
        }

        private static async Task<double[]> Stats(HttpClient control) =>
            [.. (await control.GetStringAsync("/stats")).Split(' ').Select(v => double.Parse(v, CultureInfo.InvariantCulture))];

        private static async Task GrpcPass(AsyncClientStreamingCall<Batch, Ack> call, Batch[] batches, int n)
        {
            using (call)
            {
                foreach (var batch in batches) await call.RequestStream.WriteAsync(batch);
                await call.RequestStream.CompleteAsync();
                var ack = await call;
                if (ack.Count != n) throw new InvalidOperationException($"server took {ack.Count} of {n} images");
            }
        }

        private static Task PutPass(HttpClient http, Uri uri, byte[][] images, int n, int inflight)
        {
            var next = -1;
            return Task.WhenAll(Enumerable.Range(0, inflight).Select(async _ =>
            {
                for (int i; (i = Interlocked.Increment(ref next)) < n;)
                {
                    // SendAsync takes the version from the message, not from the client's defaults.
                    using var request = new HttpRequestMessage(HttpMethod.Put, uri)
                    {
                        Content = new ByteArrayContent(images[i % images.Length]),
                        Version = http.DefaultRequestVersion, VersionPolicy = http.DefaultVersionPolicy,
                    };
                    using var response = await http.SendAsync(request);
                    if (!response.IsSuccessStatusCode)
                        throw new InvalidOperationException($"PUT {uri}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
                }
            }));
        }

        private static int FreePort()
        {
            using var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            return ((IPEndPoint)listener.LocalEndpoint).Port;
        }

        /// <summary>This executable again with `server`: through the apphost, or `dotnet the.dll` when run that way.</summary>
        private static Process StartServer(int h2Port, int h1Port, int chunk)
        {
            var host = Environment.ProcessPath!;
            var info = new ProcessStartInfo(host) { RedirectStandardInput = true, RedirectStandardOutput = true };
            if (Path.GetFileNameWithoutExtension(host) == "dotnet") info.ArgumentList.Add(typeof(BenchClient).Assembly.Location);
            foreach (var a in new[] { "server", "--h2", h2Port.ToString(CultureInfo.InvariantCulture), "--h1", h1Port.ToString(CultureInfo.InvariantCulture),
                "--chunk", chunk.ToString(CultureInfo.InvariantCulture) })
                info.ArgumentList.Add(a);
            var server = Process.Start(info)!;
            // Wait for "ready", then keep echoing whatever else the server prints (its warnings and errors).
            string? line;
            while ((line = server.StandardOutput.ReadLine()) != "ready")
            {
                if (line is null) throw new InvalidOperationException("the server exited before it was ready");
                Console.WriteLine($"[server] {line}");
            }
            _ = Task.Run(async () =>
            {
                while (await server.StandardOutput.ReadLineAsync() is { } l) Console.WriteLine($"[server] {l}");
            });
            return server;
        }
    }
}
