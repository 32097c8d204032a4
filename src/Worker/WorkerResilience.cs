using Grpc.Core;
using Polly;
using Polly.CircuitBreaker;
using Polly.Retry;
using StackExchange.Redis;

namespace RenderFarm.Worker;

/// <summary>
/// The worker's retry and circuit-breaking policies, on Polly, in one place: the coordinator stream is re-established
/// with exponential backoff whenever it breaks (<see cref="CoordinatorLink"/>), and pulling pauses while Redis is down
/// instead of failing (and logging) at every poll (<see cref="ShardPuller"/>).
/// </summary>
public static class WorkerResilience
{
    /// <summary>The first wait before reconnecting; each next one doubles, up to <see cref="ReconnectMaxDelay"/>.</summary>
    public static readonly TimeSpan ReconnectDelay = TimeSpan.FromMilliseconds(200);

    public static readonly TimeSpan ReconnectMaxDelay = TimeSpan.FromSeconds(5);

    /// <summary>Pulls that all fail within <see cref="PullSampling"/> before pulling pauses for <see cref="PullBreak"/>.</summary>
    public const int PullFailuresToBreak = 3;

    public static readonly TimeSpan PullSampling = TimeSpan.FromSeconds(10);

    /// <summary>How long pulling pauses once Redis failed; then one pull tries again (and pauses again if it fails).</summary>
    public static readonly TimeSpan PullBreak = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Whether <paramref name="e"/> is Redis failing (unreachable, refusing, or not answering in time): something to log
    /// and outlast, never a reason to end a loop. A command that times out throws <see cref="RedisTimeoutException"/>,
    /// which is a <see cref="TimeoutException"/>, not a <see cref="RedisException"/>: a stall longer than the command
    /// timeout (an AOF fsync stall, CLIENT PAUSE) throws it, not a connection error.
    /// </summary>
    public static bool IsRedisFailure(Exception e) => e is RedisException or RedisTimeoutException;

    /// <summary>Whether a failure of the coordinator stream is one that reconnecting can cure: the call or its transport broke.</summary>
    public static bool IsBrokenStream(Exception e) => e is RpcException or IOException or HttpRequestException;

    /// <summary>Retries a coordinator stream that broke, forever, waiting 200 ms, 400 ms, … up to 5 s in between.</summary>
    public static ResiliencePipeline Reconnect(ILogger logger, string coordinator, TimeProvider? time = null) =>
        new ResiliencePipelineBuilder { TimeProvider = time ?? TimeProvider.System }
            .AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = args => ValueTask.FromResult(args.Outcome.Exception is { } e && IsBrokenStream(e)),
                MaxRetryAttempts = int.MaxValue,
                BackoffType = DelayBackoffType.Exponential,
                Delay = ReconnectDelay,
                MaxDelay = ReconnectMaxDelay,
                UseJitter = false,
                OnRetry = args =>
                {
                    logger.LogWarning("Coordinator stream at {Url} broke: {Message}; reconnecting in {Delay} ms",
                        coordinator, args.Outcome.Exception!.Message, args.RetryDelay.TotalMilliseconds);
                    return default;
                },
            })
            .Build();

    /// <summary>
    /// Pauses pulling shards for <see cref="PullBreak"/> once <see cref="PullFailuresToBreak"/> pulls in a row failed on
    /// Redis (a pull then fails at once with <see cref="BrokenCircuitException"/>), and says so once rather than at
    /// every poll; it closes again at the first pull that works.
    /// </summary>
    public static ResiliencePipeline PullBreaker(ILogger logger, TimeProvider? time = null) =>
        new ResiliencePipelineBuilder { TimeProvider = time ?? TimeProvider.System }
            .AddCircuitBreaker(new CircuitBreakerStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<Exception>(IsRedisFailure),
                FailureRatio = 1.0,
                MinimumThroughput = PullFailuresToBreak,
                SamplingDuration = PullSampling,
                BreakDuration = PullBreak,
                OnOpened = args =>
                {
                    logger.LogWarning("Redis unavailable while pulling shards: {Message}; pausing pulls for {Seconds} s",
                        args.Outcome.Exception?.Message, args.BreakDuration.TotalSeconds);
                    return default;
                },
                OnClosed = _ =>
                {
                    logger.LogInformation("Redis answers again: pulling shards");
                    return default;
                },
            })
            .Build();
}
