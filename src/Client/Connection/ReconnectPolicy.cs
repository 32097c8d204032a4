using Polly;
using Polly.Retry;

namespace RenderFarm.Client.Connection;

/// <summary>Back-off between reconnects: exponential from <see cref="InitialDelay"/> to <see cref="MaxDelay"/>.</summary>
public sealed record ReconnectPolicy(TimeSpan InitialDelay, TimeSpan MaxDelay, TimeSpan GiveUpAfter)
{
    /// <summary>0.25 s doubling to 5 s; give up when no event arrived for 2 minutes of retrying.</summary>
    public static ReconnectPolicy Default { get; } =
        new(TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(5), TimeSpan.FromMinutes(2));

    /// <summary>The wait before reconnect attempt <paramref name="attempt"/> (1-based) of one outage.</summary>
    public TimeSpan DelayFor(int attempt)
    {
        var factor = Math.Pow(2, Math.Clamp(attempt - 1, 0, 30));
        var delay = TimeSpan.FromTicks((long)Math.Min(InitialDelay.Ticks * factor, MaxDelay.Ticks));
        return delay;
    }

    /// <summary>
    /// A Polly retry of <paramref name="maxAttempts"/> attempts in all, waiting as <see cref="DelayFor"/> does
    /// (exponential, capped, no jitter).
    /// </summary>
    public RetryStrategyOptions Retry(int maxAttempts) => new()
    {
        MaxRetryAttempts = maxAttempts - 1,
        BackoffType = DelayBackoffType.Exponential,
        Delay = InitialDelay,
        MaxDelay = MaxDelay,
        UseJitter = false,
    };
}
