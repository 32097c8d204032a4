using Google.Protobuf;
using Grpc.Core;
using RenderFarm.Protocol;
using Xunit.Abstractions;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// Random mutations of valid requests to every JobService method, sent as raw bytes so they can be any malformed
/// protobuf: the coordinator answers each with a status (never a crash, a hang, UNKNOWN or INTERNAL), keeps no partial
/// job, and still serves a normal batch. Bounded by count and time; the run count is printed.
/// </summary>
public sealed class FuzzTests(LimitedFarmFixture fixture, ITestOutputHelper output) : IClassFixture<LimitedFarmFixture>
{
    private static readonly Method<byte[], byte[]> Submit = RawCalls.Job(MethodType.ClientStreaming, "SubmitJob");

    /// <summary>Every method taking a single request; each gets mutations of a request with a job id.</summary>
    private static readonly Method<byte[], byte[]>[] SingleRequest =
    [
        .. new[] { "GetJob", "ListJobs", "CancelJob", "RetryJob", "PauseJob", "ResumeJob", "ListWorkers", "ListModels" }
            .Select(name => RawCalls.Job(MethodType.Unary, name)),
        RawCalls.Job(MethodType.ServerStreaming, "WatchJob"),
        RawCalls.Job(MethodType.ServerStreaming, "DownloadResults"),
    ];

    [Fact]
    public async Task MutatedRequestsNeverCrashTheCoordinatorOrLeaveAPartialJob()
    {
        var farm = fixture.Cluster;
        using var channel = Grpc.Net.Client.GrpcChannel.ForAddress(farm.CoordinatorUrl);
        var invoker = channel.CreateCallInvoker();
        var random = new Random(20261123);
        var header = new SubmitJobRequest
        {
            Header = new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 4, GuidanceScale = 7.5f, Model = "tiny" }, Seeds = { 3 }, Label = "fuzz" },
        }.ToByteArray();
        var prompt = new SubmitJobRequest { Prompt = new PromptItem { Prompt = "a fuzzy cat", NegativePrompt = "blurry", Seeds = { 1, 2 } } }.ToByteArray();
        var get = new GetJobRequest { JobId = "abcdefghijklmnop" }.ToByteArray();

        var statuses = new Dictionary<StatusCode, int>();
        var deadline = DateTime.UtcNow.AddSeconds(40);
        var runs = 0;
        for (; runs < 600 && DateTime.UtcNow < deadline; runs++)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            var options = new CallOptions(cancellationToken: timeout.Token);
            var method = runs % 2 == 0 ? Submit : SingleRequest[random.Next(SingleRequest.Length)];
            List<byte[]> messages = method == Submit
                ? [Mutate(header, random), .. Enumerable.Range(0, random.Next(0, 4)).Select(_ => Mutate(prompt, random))]
                : [Mutate(get, random)];
            StatusCode code;
            var detail = "";
            try
            {
                await RawCalls.SendAsync(invoker, method, messages, options);
                code = StatusCode.OK;
            }
            catch (RpcException e)
            {
                (code, detail) = (e.StatusCode, e.Status.Detail);
            }
            Assert.NotEqual(StatusCode.DeadlineExceeded, code);
            Assert.False(timeout.IsCancellationRequested, $"run {runs} hung");
            // A malformed body is INVALID_ARGUMENT; UNKNOWN or INTERNAL would be the coordinator failing on it.
            Assert.False(code is StatusCode.Unknown or StatusCode.Internal, $"run {runs}: {method.Name} answered {code}: {detail}");
            statuses[code] = statuses.GetValueOrDefault(code) + 1;
        }

        output.WriteLine($"fuzz runs: {runs}; statuses: {string.Join(", ", statuses.OrderBy(s => s.Key).Select(s => $"{s.Key}={s.Value}"))}");
        Assert.True(runs >= 100, $"only {runs} runs");

        // Accepted mutations are real jobs (with a meta hash); nothing half-made remains, and a normal batch still works.
        await foreach (var key in farm.RedisAdmin.KeysAsync(pattern: "{job:*"))
        {
            var name = (string)key!;
            Assert.True(await farm.Redis.KeyExistsAsync(name[..(name.IndexOf('}') + 1)] + ":meta"), $"partial job key {name}");
        }
        var ok = await farm.SubmitAsync(new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 2 } },
            [new PromptItem { Prompt = "after the fuzz" }]);
        Assert.Equal(1u, ok.ImageCount);
        foreach (var job in (await farm.Jobs.ListJobsAsync(new ListJobsRequest { Limit = 1000 })).Jobs)
            await farm.Jobs.CancelJobAsync(new CancelJobRequest { JobId = job.JobId });
    }

    /// <summary>Flips, inserts, deletes or duplicates bytes; sometimes truncates.</summary>
    private static byte[] Mutate(byte[] input, Random random)
    {
        var bytes = new List<byte>(input);
        for (var n = random.Next(1, 6); n > 0; n--)
        {
            var at = bytes.Count == 0 ? 0 : random.Next(bytes.Count);
            switch (random.Next(5))
            {
                case 0 when bytes.Count > 0: bytes[at] ^= (byte)(1 << random.Next(8)); break;
                case 1: bytes.Insert(at, (byte)random.Next(256)); break;
                case 2 when bytes.Count > 0: bytes.RemoveAt(at); break;
                case 3 when bytes.Count > 0: bytes[at] = (byte)random.Next(256); break;
                case 4: bytes.RemoveRange(at, bytes.Count - at); break;
            }
        }
        return [.. bytes];
    }
}
