using System.Net;
using System.Threading.Channels;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using RenderFarm.Protocol;

namespace RenderFarm.Worker.Tests.Support;

/// <summary>
/// The coordinator's side of the worker stream, in this process on real Kestrel and real gRPC: each stream a worker
/// opens is answered with the messages the test scripted for it (by its number, from 1), then held open until the test
/// ends it or the worker goes away. Nothing else of a coordinator (no Redis, no registry).
/// </summary>
public sealed class FakeCoordinator : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly Streams _streams;

    private FakeCoordinator(WebApplication app, Streams streams)
    {
        _app = app;
        _streams = streams;
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        Port = new Uri(address).Port;
    }

    public int Port { get; }

    public string Url => $"http://127.0.0.1:{Port}";

    /// <param name="script">What the coordinator sends on the worker's Nth stream, once its hello arrived.</param>
    public static async Task<FakeCoordinator> StartAsync(Func<int, CoordinatorMessage[]> script)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.Protocols = HttpProtocols.Http2));
        builder.Logging.ClearProviders();
        var streams = new Streams(script);
        builder.Services.AddSingleton(streams);
        builder.Services.AddGrpc();
        var app = builder.Build();
        app.MapGrpcService<Service>();
        await app.StartAsync();
        return new FakeCoordinator(app, streams);
    }

    /// <summary>The worker's next stream, once its scripted messages were sent.</summary>
    public async Task<OpenStream> NextStreamAsync(TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            return await _streams.Opened.Reader.ReadAsync(cancel.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"the worker opened no new stream within {timeout.TotalSeconds:0} s");
        }
    }

    public async ValueTask DisposeAsync()
    {
        using var giveUp = new CancellationTokenSource(TimeSpan.FromSeconds(5)); // streams still open are cut then
        await _app.StopAsync(giveUp.Token);
        await _app.DisposeAsync();
    }

    /// <summary>One worker stream: <see cref="End"/> closes it from the coordinator's side (as a coordinator that stops does).</summary>
    public sealed class OpenStream(int number)
    {
        private readonly TaskCompletionSource _ended = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int Number { get; } = number;

        internal Task Ended => _ended.Task;

        public void End() => _ended.TrySetResult();
    }

    private sealed class Streams(Func<int, CoordinatorMessage[]> script)
    {
        private int _count;

        public Channel<OpenStream> Opened { get; } = Channel.CreateUnbounded<OpenStream>();

        public (int Number, CoordinatorMessage[] Messages) Next()
        {
            var number = Interlocked.Increment(ref _count);
            return (number, script(number));
        }
    }

    private sealed class Service(Streams streams) : WorkerService.WorkerServiceBase
    {
        public override async Task Connect(IAsyncStreamReader<WorkerMessage> requestStream, IServerStreamWriter<CoordinatorMessage> responseStream,
            ServerCallContext context)
        {
            var ct = context.CancellationToken;
            if (!await requestStream.MoveNext(ct) || requestStream.Current.KindCase != WorkerMessage.KindOneofCase.Hello) return;
            var (number, messages) = streams.Next();
            foreach (var message in messages) await responseStream.WriteAsync(message, ct);
            var stream = new OpenStream(number);
            streams.Opened.Writer.TryWrite(stream);
            await Task.WhenAny(stream.Ended, ReadUntilGoneAsync(requestStream, ct));
        }

        /// <summary>Takes the worker's reports (heartbeats, statuses) until its side closes or the call ends.</summary>
        private static async Task ReadUntilGoneAsync(IAsyncStreamReader<WorkerMessage> requests, CancellationToken ct)
        {
            try
            {
                while (await requests.MoveNext(ct)) { }
            }
            catch (Exception e) when (e is OperationCanceledException or IOException or InvalidOperationException) { }
        }
    }
}
