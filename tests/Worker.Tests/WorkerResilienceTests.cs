using Grpc.Core;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Polly.CircuitBreaker;
using StackExchange.Redis;

namespace RenderFarm.Worker.Tests;

public sealed class WorkerResilienceTests
{
    [Fact]
    public async Task ABrokenCoordinatorStreamIsRetriedForeverWaitingTwiceAsLongEachTimeUpToFiveSeconds()
    {
        var time = new RecordingTimeProvider();
        var log = new RecordingLogger();
        var pipeline = WorkerResilience.Reconnect(log, "http://coordinator:5000", time);
        var attempts = 0;

        await pipeline.ExecuteAsync(_ =>
        {
            if (++attempts <= 40) throw new RpcException(new Status(StatusCode.Unavailable, "coordinator restarting"));
            return ValueTask.CompletedTask;
        });

        Assert.Equal(41, attempts);
        Assert.Equal([200, 400, 800, 1600, 3200, .. Enumerable.Repeat(5000, 35)], time.Waits.Select(w => (int)w.TotalMilliseconds));
        Assert.Equal("Coordinator stream at http://coordinator:5000 broke: Status(StatusCode=\"Unavailable\", Detail=\"coordinator restarting\"); reconnecting in 200 ms",
            log.Messages[0]);
    }

    [Fact]
    public async Task AnythingButABrokenStreamIsNotRetried()
    {
        var pipeline = WorkerResilience.Reconnect(new RecordingLogger(), "http://coordinator:5000", new RecordingTimeProvider());
        var attempts = 0;

        await Assert.ThrowsAsync<InvalidOperationException>(() => pipeline.ExecuteAsync(_ =>
        {
            attempts++;
            throw new InvalidOperationException("a bug");
        }).AsTask());
        Assert.Equal(1, attempts);
    }

    [Fact]
    public async Task PullingPausesAfterThreeFailuresOnRedisAndResumesAtTheFirstPullThatWorks()
    {
        var time = new FakeTimeProvider();
        var log = new RecordingLogger();
        var breaker = WorkerResilience.PullBreaker(log, time);
        var pulls = 0;
        ValueTask<int> Down(CancellationToken _)
        {
            pulls++;
            throw new RedisConnectionException(ConnectionFailureType.UnableToConnect, CommandFlags.None, "redis down", null, CommandStatus.Unknown);
        }

        for (var i = 0; i < WorkerResilience.PullFailuresToBreak; i++)
            await Assert.ThrowsAsync<RedisConnectionException>(() => breaker.ExecuteAsync(Down).AsTask());
        // Open: a pull fails at once, without asking Redis.
        await Assert.ThrowsAsync<BrokenCircuitException>(() => breaker.ExecuteAsync(Down).AsTask());
        Assert.Equal(3, pulls);
        Assert.Equal("Redis unavailable while pulling shards: redis down; pausing pulls for 5 s", Assert.Single(log.Messages));

        time.Advance(WorkerResilience.PullBreak);
        Assert.Equal(7, await breaker.ExecuteAsync(_ => ValueTask.FromResult(7)));
        Assert.Equal(7, await breaker.ExecuteAsync(_ => ValueTask.FromResult(7)));
        Assert.Equal("Redis answers again: pulling shards", log.Messages[^1]);
    }

    [Fact]
    public async Task RedisTimingOutPausesPullingLikeRedisBeingDown()
    {
        // A stall past the command timeout throws RedisTimeoutException: a TimeoutException, not a RedisException.
        var breaker = WorkerResilience.PullBreaker(new RecordingLogger(), new FakeTimeProvider());
        ValueTask<int> Stalled(CancellationToken _) => throw new RedisTimeoutException(CommandFlags.None, "Timeout awaiting response", CommandStatus.Sent);

        for (var i = 0; i < WorkerResilience.PullFailuresToBreak; i++)
            await Assert.ThrowsAsync<RedisTimeoutException>(() => breaker.ExecuteAsync(Stalled).AsTask());
        await Assert.ThrowsAsync<BrokenCircuitException>(() => breaker.ExecuteAsync(Stalled).AsTask());
        Assert.True(WorkerResilience.IsRedisFailure(new RedisTimeoutException(CommandFlags.None, "Timeout awaiting response", CommandStatus.Sent)));
        Assert.False(WorkerResilience.IsRedisFailure(new TimeoutException("nvidia-smi did not answer")));
    }

    [Fact]
    public async Task FailuresAmongPullsThatWorkDoNotPausePulling()
    {
        var breaker = WorkerResilience.PullBreaker(new RecordingLogger(), new FakeTimeProvider());
        for (var i = 0; i < 10; i++)
        {
            await breaker.ExecuteAsync(_ => ValueTask.FromResult(0));
            await Assert.ThrowsAsync<RedisConnectionException>(() => breaker.ExecuteAsync<int>(_ =>
                throw new RedisConnectionException(ConnectionFailureType.SocketFailure, CommandFlags.None, "blip", null, CommandStatus.Unknown)).AsTask());
        }
        Assert.Equal(1, await breaker.ExecuteAsync(_ => ValueTask.FromResult(1)));
    }

    /// <summary>Completes every wait at once, remembering how long it was asked to be.</summary>
    private sealed class RecordingTimeProvider : TimeProvider
    {
        public List<TimeSpan> Waits { get; } = [];

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            lock (Waits) Waits.Add(dueTime);
            ThreadPool.QueueUserWorkItem(_ => callback(state));
            return new DoneTimer();
        }

        private sealed class DoneTimer : ITimer
        {
            public bool Change(TimeSpan dueTime, TimeSpan period) => false;
            public void Dispose() { }
            public ValueTask DisposeAsync() => default;
        }
    }

    private sealed class RecordingLogger : ILogger
    {
        public List<string> Messages { get; } = [];

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (Messages) Messages.Add(formatter(state, exception));
        }
    }
}
