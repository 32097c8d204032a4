using System.Net;
using System.Security.Cryptography;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using RenderFarm.Client.Tests.Support;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Tests.Cli;

/// <summary>
/// The CLI against a real gRPC server over plain HTTP/2 (h2c) on loopback: the transport the coordinator uses, with
/// a scripted JobService in place of the coordinator.
/// </summary>
public sealed class TransportTests : IAsyncLifetime, IDisposable
{
    private readonly TempDir _dir = new();
    private readonly ScriptedJobService _service = new();
    private WebApplication? _app;
    private string _address = "";

    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, o => o.Protocols = HttpProtocols.Http2));
        builder.Services.AddGrpc();
        builder.Services.AddSingleton(_service);
        _app = builder.Build();
        _app.MapGrpcService<ScriptedJobService>();
        await _app.StartAsync();
        _address = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
    }

    public async Task DisposeAsync()
    {
        if (_app is not null)
        {
            await _app.DisposeAsync();
        }
    }

    public void Dispose() => _dir.Dispose();

    private Task<(int Code, string Out, string Err)> Run(params string[] args) => Run(new StringWriter(), args);

    private async Task<(int Code, string Out, string Err)> Run(StringWriter stdout, params string[] args)
    {
        var stderr = new StringWriter();
        var host = new FarmCliHost(stdout, stderr) { GetEnvironmentVariable = _ => null, Time = new InstantTime(), RandomSeed = () => 1 };
        var code = await FarmCli.RunAsync([.. args, "--coordinator", _address, "--api-key", "k-123"], host);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Fact]
    public async Task SubmitOverPlainHttp2StreamsEveryPromptAndSendsTheApiKey()
    {
        var file = _dir.File("p.txt", string.Join('\n', Enumerable.Range(0, 500).Select(i => $"prompt {i}")));

        var (code, stdout, stderr) = await Run("submit", file, "--seeds", "1,2");

        Assert.True(code == 0, stderr);
        Assert.Equal("job-500\n", stdout);
        Assert.Equal(500, _service.PromptsReceived);
        Assert.All(_service.ApiKeys, key => Assert.Equal("k-123", key));
    }

    [Fact]
    public async Task WatchSurvivesTheServerAbortingTheStreamAndResumesAfterTheLastEvent()
    {
        // The server aborts once the CLI has shown the events it sent: a reset can discard data the client has not read
        // yet, and a watch that never received an event reports the failure instead of reconnecting.
        var shown = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _service.BeforeAbort = shown.Task;
        var output = new WatchedWriter("image 0 done", shown);

        var (code, stdout, stderr) = await Run(output, "watch", "J");

        Assert.True(code == 0, stderr);
        Assert.Equal(["", "2-0"], _service.WatchAfter);
        Assert.Equal("queued 2 images in 1 shards\nimage 0 done (1/2)\nimage 1 done (2/2)\njob completed 2 done 0 failed\n", stdout);
        Assert.Contains("reconnecting", stderr);
    }

    [Fact]
    public async Task PullOverTheRealTransportVerifiesAndWritesFiles()
    {
        var outDir = Path.Combine(_dir.Path, "o");

        var (code, _, stderr) = await Run("pull", "J", "--out", outDir);

        Assert.True(code == 0, stderr);
        Assert.Equal(ScriptedJobService.Png, File.ReadAllBytes(Path.Combine(outDir, "00000-42-hello-world.png")));
    }

    [Fact]
    public async Task UnknownJobExitsFour()
    {
        var (code, _, stderr) = await Run("status", "missing");

        Assert.Equal(4, code);
        Assert.Equal("error: job 'missing' not found (NotFound)", stderr.Trim());
    }

    public sealed class ScriptedJobService : JobService.JobServiceBase
    {
        public static readonly byte[] Png = Enumerable.Range(0, 200_000).Select(i => (byte)(i * 7)).ToArray();
        public int PromptsReceived;
        public List<string> ApiKeys { get; } = [];
        public List<string> WatchAfter { get; } = [];

        /// <summary>What the first WatchJob call waits for, after its events, before it aborts the stream.</summary>
        public Task BeforeAbort { get; set; } = Task.CompletedTask;

        public override async Task<SubmitJobResponse> SubmitJob(IAsyncStreamReader<SubmitJobRequest> requestStream, ServerCallContext context)
        {
            ApiKeys.Add(context.RequestHeaders.GetValue("x-api-key") ?? "");
            var seeds = 0;
            await foreach (var request in requestStream.ReadAllAsync(context.CancellationToken))
            {
                if (request.ItemCase == SubmitJobRequest.ItemOneofCase.Header)
                {
                    seeds = request.Header.Seeds.Count;
                }
                else
                {
                    Interlocked.Increment(ref PromptsReceived);
                }
            }

            return new SubmitJobResponse { JobId = $"job-{PromptsReceived}", ImageCount = (uint)(PromptsReceived * seeds), ShardCount = 1 };
        }

        public override async Task WatchJob(WatchJobRequest request, IServerStreamWriter<JobEvent> responseStream, ServerCallContext context)
        {
            ApiKeys.Add(context.RequestHeaders.GetValue("x-api-key") ?? "");
            lock (WatchAfter)
            {
                WatchAfter.Add(request.AfterEventId);
            }

            if (request.AfterEventId == "")
            {
                await responseStream.WriteAsync(new JobEvent { EventId = "1-0", Queued = new JobQueued { ImageCount = 2, ShardCount = 1 } });
                await responseStream.WriteAsync(new JobEvent { EventId = "2-0", ImageDone = new ImageDone { Index = 0, ImagesDone = 1 } });
                await BeforeAbort.WaitAsync(TimeSpan.FromMinutes(1), context.CancellationToken);
                context.GetHttpContext().Abort(); // the coordinator dies mid-stream
                return;
            }

            await responseStream.WriteAsync(new JobEvent { EventId = "3-0", ImageDone = new ImageDone { Index = 1, ImagesDone = 2 } });
            await responseStream.WriteAsync(new JobEvent { EventId = "4-0", JobFinished = new JobFinished { State = JobState.Completed, ImagesDone = 2 } });
        }

        public override Task<JobStatus> GetJob(GetJobRequest request, ServerCallContext context) =>
            request.JobId == "missing"
                ? throw new RpcException(new Status(StatusCode.NotFound, $"job '{request.JobId}' not found"))
                : Task.FromResult(new JobStatus { JobId = request.JobId, State = JobState.Completed, ImageCount = 1, ImagesDone = 1 });

        public override async Task DownloadResults(DownloadResultsRequest request, IServerStreamWriter<ResultChunk> responseStream, ServerCallContext context)
        {
            await responseStream.WriteAsync(new ResultChunk
            {
                Image = new ImageInfo { Index = 0, Prompt = "Hello, world!", Seed = 42, SizeBytes = (ulong)Png.Length, Sha256 = Convert.ToHexStringLower(SHA256.HashData(Png)) },
            });
            for (var offset = 0; offset < Png.Length; offset += 65_536)
            {
                await responseStream.WriteAsync(new ResultChunk { Data = ByteString.CopyFrom(Png, offset, Math.Min(65_536, Png.Length - offset)) });
            }
        }
    }

    /// <summary>Completes <paramref name="seen"/> once the text written so far contains <paramref name="marker"/>.</summary>
    private sealed class WatchedWriter(string marker, TaskCompletionSource seen) : StringWriter
    {
        public override void Write(char value) { base.Write(value); Check(); }
        public override void Write(string? value) { base.Write(value); Check(); }
        public override void Write(char[] buffer, int index, int count) { base.Write(buffer, index, count); Check(); }

        private void Check()
        {
            if (!seen.Task.IsCompleted && ToString().Contains(marker, StringComparison.Ordinal)) seen.TrySetResult();
        }
    }
}
