// Usage: dotnet run -c Release --project bench/S3ClientBench [-- --rounds N]
// Starts s3rver (tests/Farm.Tests/Storage/s3server, `npm ci` there first if it is missing) on a free loopback port,
// then measures, in this process's CPU time (getrusage via Process.TotalProcessorTime; s3rver's own CPU not counted),
// rounds of each way interleaved, order rotated every round.
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using RenderFarm.Coordinator.Storage;

var rounds = args.Length == 2 && args[0] == "--rounds" ? int.Parse(args[1]) : 3;
var root = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../.."));
var s3rver = Path.Combine(root, "tests/Farm.Tests/Storage/s3server/node_modules/s3rver/bin/s3rver.js");
if (!File.Exists(s3rver)) throw new InvalidOperationException($"{s3rver} is missing: run `npm ci` in tests/Farm.Tests/Storage/s3server");
var probe = new TcpListener(IPAddress.Loopback, 0);
probe.Start();
var port = ((IPEndPoint)probe.LocalEndpoint).Port;
probe.Stop();
var data = Directory.CreateTempSubdirectory("s3client-bench-").FullName;
using var server = Process.Start(new ProcessStartInfo("node") { ArgumentList = { s3rver, "-d", data, "-a", "127.0.0.1", "-p", port.ToString(), "--silent", "--no-vhost-buckets" } })!;
try
{
    var endpoint = $"http://127.0.0.1:{port}";
    var options = new S3StorageOptions { Endpoint = endpoint, Region = "us-east-1", AccessKey = "S3RVER", SecretKey = "S3RVER", UsePathStyle = true, ConditionalWrites = false };
    using var store = new S3ResultStore(new RenderFarm.Coordinator.Storage.S3Location("bench", "results"), options);
    for (var tries = 0; ; tries++)
    {
        try { await store.CreateBucketAsync(CancellationToken.None); break; }
        catch (Exception) when (tries < 100) { await Task.Delay(100); }
    }
    var png = new byte[440_000];
    Random.Shared.NextBytes(png);
    await store.PutIfAbsentAsync("job", 1, png, CancellationToken.None);
    using var sdk = new AmazonS3Client(new BasicAWSCredentials("S3RVER", "S3RVER"), new AmazonS3Config
    {
        ServiceURL = endpoint, ForcePathStyle = true, AuthenticationRegion = "us-east-1",
        RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED, ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
    });
    var sha = System.Security.Cryptography.SHA256.HashData(png);
    var buffer = new byte[png.Length];

    // Each way: (name, calls per pass, one call).
    (string Name, int Calls, Func<Task> Call)[] ways =
    [
        ("presign PUT, AWSSDK GetPreSignedURL", 5000, () =>
        {
            var request = new GetPreSignedUrlRequest { BucketName = "bench", Key = "results/job/000001.png", Verb = HttpVerb.PUT, Expires = DateTime.UtcNow.AddMinutes(15), Protocol = Protocol.HTTP, ContentType = "image/png" };
            request.Headers["x-amz-checksum-sha256"] = Convert.ToBase64String(sha);
            request.Headers["Content-Length"] = png.Length.ToString();
            request.Metadata["x-amz-meta-sha256"] = Convert.ToHexStringLower(sha);
            sdk.GetPreSignedURL(request);
            return Task.CompletedTask;
        }),
        ("presign PUT, S3UrlSigner (the store)", 5000, () => { store.PresignUpload("job", 1, sha, png.Length, TimeSpan.FromMinutes(15)); return Task.CompletedTask; }),
        ("read 0.44 MB, AWSSDK GetObject", 200, async () =>
        {
            using var response = await sdk.GetObjectAsync("bench", "results/job/000001.png");
            await response.ResponseStream.ReadExactlyAsync(buffer);
        }),
        ("read 0.44 MB, GET of a presigned URL (the store)", 200, async () =>
        {
            await using var stream = (await store.OpenReadAsync("job", 1, CancellationToken.None))!;
            await stream.ReadExactlyAsync(buffer);
        }),
    ];
    foreach (var way in ways) for (var i = 0; i < way.Calls; i++) await way.Call(); // warm-up: past the JIT's tiering
    var results = ways.ToDictionary(w => w.Name, _ => new List<double>());
    for (var round = 0; round < rounds; round++)
    {
        foreach (var way in ways.Skip(round % ways.Length).Concat(ways.Take(round % ways.Length)))
        {
            var cpu = Process.GetCurrentProcess().TotalProcessorTime;
            for (var i = 0; i < way.Calls; i++) await way.Call();
            results[way.Name].Add((Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalMicroseconds / way.Calls);
        }
    }
    Console.WriteLine($"# {Environment.ProcessorCount} cores, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {rounds} rounds; CPU µs per call (median, range)");
    foreach (var (name, values) in results)
    {
        var sorted = values.Order().ToList();
        Console.WriteLine($"{name,-50} {sorted[sorted.Count / 2],9:F1}   ({sorted[0]:F1}–{sorted[^1]:F1})");
    }
}
finally
{
    server.Kill();
    Directory.Delete(data, recursive: true);
}
