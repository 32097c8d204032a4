using RenderFarm.Client.Connection;
using RenderFarm.Client.Submit;
using RenderFarm.Protocol;

namespace RenderFarm.Client;

/// <summary>
/// Everything the CLI touches outside itself: its writers, stdin, environment, the coordinator client and the clock
/// retries wait on. <see cref="FarmCli.RunAsync(string[], TextWriter, TextWriter, CancellationToken)"/>
/// fills it for the real process; tests build one over <see cref="StringWriter"/>s and a fake client.
/// </summary>
public sealed class FarmCliHost(TextWriter stdout, TextWriter stderr)
{
    public TextWriter Out { get; } = stdout;
    public TextWriter Error { get; } = stderr;

    /// <summary>Where <c>farm submit -</c> reads prompts; null means <see cref="Console.In"/>.</summary>
    public TextReader? In { get; init; }

    /// <summary>True when <see cref="Out"/> is an interactive terminal (live displays allowed).</summary>
    public bool OutIsTerminal { get; init; }

    /// <summary>True when <see cref="Error"/> is an interactive terminal.</summary>
    public bool ErrorIsTerminal { get; init; }

    public Func<string, string?> GetEnvironmentVariable { get; init; } = Environment.GetEnvironmentVariable;

    /// <summary>Creates the JobService client for a coordinator address; null means a real gRPC channel.</summary>
    public Func<Uri, JobService.JobServiceClient>? ClientFactory { get; init; }

    /// <summary>Source of the seed used when the user gives none.</summary>
    public Func<long> RandomSeed { get; init; } = SeedPlan.NewRandomSeed;

    public ReconnectPolicy ReconnectPolicy { get; init; } = ReconnectPolicy.Default;

    /// <summary>How long a watched job may sit queued with no shard started before watch asks why (and how often after).</summary>
    public TimeSpan WaitingCheckInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// The clock retries and reconnects wait on (their Polly pipelines) and watch measures an outage with; tests pass one
    /// whose timers fire at once.
    /// </summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;

    /// <summary>A host over the real console: live displays only where the stream is a terminal.</summary>
    public static FarmCliHost ForWriters(TextWriter stdout, TextWriter stderr)
    {
        var dumb = string.Equals(Environment.GetEnvironmentVariable("TERM"), "dumb", StringComparison.Ordinal);
        return new FarmCliHost(stdout, stderr)
        {
            OutIsTerminal = !dumb && ReferenceEquals(stdout, Console.Out) && !Console.IsOutputRedirected,
            ErrorIsTerminal = !dumb && ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected,
        };
    }
}
