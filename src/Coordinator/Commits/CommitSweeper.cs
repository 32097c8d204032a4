using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace RenderFarm.Coordinator.Commits;

/// <summary>
/// Every coordinator's background recovery of commits whose coordinator died (<see cref="CommitRecoveryOptions.SweepInterval"/>):
/// claims each commit that made no progress for <see cref="CommitRecoveryOptions.Grace"/>, one at a time (a claim is
/// atomic, so concurrent sweeps of several coordinators each take different commits), and settles it
/// (<see cref="CommitRecovery"/>). A sweeper that dies with a claimed commit leaves it stale again after the grace, for
/// the next; every step is idempotent.
/// </summary>
public sealed class CommitSweeper(
    CommitJournal journal,
    CommitRecovery recovery,
    IOptions<CommitRecoveryOptions> options,
    ILogger<CommitSweeper> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.SweepInterval);
        do
        {
            try
            {
                await SweepAsync(stoppingToken);
            }
            catch (Exception e) when (e is RedisException or IOException or TimeoutException)
            {
                logger.LogWarning("Commit recovery stopped early, continuing at the next sweep: {Message}", e.Message);
            }
            catch (Exception e) when (!stoppingToken.IsCancellationRequested)
            {
                // Anything else is a bug, but one that must not stop the coordinator: a hosted service that throws ends
                // the process, and the same stale commit would then stop every replica in turn.
                logger.LogError(e, "Commit recovery failed, continuing at the next sweep");
            }
        } while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    /// <summary>One sweep: every commit stale now. Returns how many it settled.</summary>
    public Task<int> SweepAsync(CancellationToken cancellationToken) => SweepAsync(options.Value.Grace, cancellationToken);

    /// <summary>
    /// One sweep of the commits that made no progress for <paramref name="grace"/>: tests drive recovery with a grace of
    /// their own (zero: every commit open now) instead of waiting for the configured one.
    /// </summary>
    internal async Task<int> SweepAsync(TimeSpan grace, CancellationToken cancellationToken)
    {
        var settled = 0;
        var taken = new HashSet<string>(StringComparer.Ordinal);
        // A commit whose recovery failed is claimed again only by a later sweep: under a grace shorter than this sweep
        // (zero, in tests) the claim just made would make it stale at once, and the sweep would go round it for ever.
        while (!cancellationToken.IsCancellationRequested && await journal.ClaimStaleAsync(grace) is { } lease && taken.Add(lease.Commit.Member))
        {
            try
            {
                await recovery.RecoverAsync(lease, cancellationToken);
                settled++;
            }
            catch (CommitLostException)
            {
                // Its committer went on after all, or another sweep took it after this one stalled: theirs to settle.
                logger.LogInformation("Commit {Commit} was taken back while being recovered; left to its holder", lease.Commit.Member);
            }
            catch (Exception e) when (e is IOException or TimeoutException && !cancellationToken.IsCancellationRequested)
            {
                // The store failed (S3 unreachable, say): the commit stays claimed and is stale again after the grace.
                logger.LogWarning("Recovery of commit {Commit} failed, retried after the grace: {Message}", lease.Commit.Member, e.Message);
            }
            catch (Exception e) when (e is not RedisException && !cancellationToken.IsCancellationRequested)
            {
                // Unforeseen (a store's permission error, a staged shard that does not parse): this commit waits for the
                // grace, the others go on. (Redis failing ends the sweep: the next one tries again.)
                logger.LogError(e, "Recovery of commit {Commit} failed, retried after the grace", lease.Commit.Member);
            }
        }
        return settled;
    }
}
