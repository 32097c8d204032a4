using Microsoft.Extensions.Options;
using RenderFarm.Coordinator.Jobs;
using RenderFarm.Coordinator.Workers;
using RenderFarm.FarmState.Retention;
using RenderFarm.FarmState.TaskStreams;
using RenderFarm.Protocol;
using StackExchange.Redis;

namespace RenderFarm.Coordinator.Retention;

/// <summary>
/// Every coordinator's background sweep (<see cref="RetentionOptions.SweepInterval"/>): takes the retention work that is
/// due (<see cref="RetentionSchedule"/>; leased, so concurrent sweeps of several coordinators each take different jobs)
/// and applies <see cref="RetentionPolicy"/> to it; then forgets workers long offline and their stream consumers. Every
/// step is idempotent: work whose sweeper died is due again after its lease and simply done again.
/// </summary>
public sealed class RetentionSweeper(
    RetentionSchedule schedule,
    JobRepository jobs,
    JobDeleter deleter,
    WorkerRegistry workers,
    ShardQueue queue,
    Estimates.RenderRates rates,
    IOptions<RetentionOptions> options,
    ILogger<RetentionSweeper> logger) : BackgroundService
{
    private const int Batch = 100;
    private readonly RetentionPolicy _policy = new(options.Value);

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
                logger.LogWarning("Retention sweep stopped early, continuing at the next: {Message}", e.Message);
            }
            catch (Exception e) when (!stoppingToken.IsCancellationRequested)
            {
                // Anything else is a bug, but one that must not stop the coordinator: a hosted service that throws ends
                // the process, and the same due work would then stop every replica in turn.
                logger.LogError(e, "Retention sweep failed, continuing at the next");
            }
        } while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    /// <summary>One sweep: everything due now. Returns how many jobs it handled.</summary>
    public async Task<int> SweepAsync(CancellationToken cancellationToken)
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        await schedule.BackfillAsync(now);
        var handled = 0;
        while (!cancellationToken.IsCancellationRequested)
        {
            var due = await schedule.ClaimDueAsync(now, Batch);
            foreach (var member in due)
            {
                try
                {
                    await HandleAsync(member, now, cancellationToken);
                    handled++;
                }
                catch (Exception e) when (e is IOException or TimeoutException && !cancellationToken.IsCancellationRequested)
                {
                    // The store failed (S3 unreachable, say): the member stays leased and is tried again after the lease.
                    logger.LogWarning("Retention of {Member} failed, retried later: {Message}", member, e.Message);
                }
                catch (Exception e) when (e is not RedisException && !cancellationToken.IsCancellationRequested)
                {
                    // Unforeseen (a store error of a kind not mapped yet): this member waits for its lease, the others go on.
                    logger.LogError(e, "Retention of {Member} failed, retried later", member);
                }
            }
            if (due.Count < Batch) break;
        }
        await ForgetGoneWorkersAsync(now);
        return handled;
    }

    private async Task HandleAsync(string member, long now, CancellationToken cancellationToken)
    {
        if (!RetentionTasks.TryParse(member, out var kind, out var jobId))
        {
            await schedule.ForgetAsync(member);
            return;
        }
        if (kind == RetentionTasks.Results)
        {
            // A job that still has records and whose images were never marked gone was re-opened by a retry before a
            // sweep that stopped half-way could mark them: they are its own again.
            if ((await jobs.GetRetentionStateAsync(jobId)) is not { Exists: true, ResultsExpired: false })
                await deleter.DeleteResultsAsync(jobId, cancellationToken);
            await schedule.ForgetAsync(member);
            return;
        }
        var state = await jobs.GetRetentionStateAsync(jobId);
        var decision = _policy.Decide(state, now);
        if (decision.DropInputs) await jobs.ExpireInputsAsync(jobId);
        // Before the records go, so that a sweep stopping in between leaves the images on record (should the job be
        // re-opened instead, the task finds it so and leaves them).
        if (decision.ResultsDueMs is { } later) await schedule.DueAsync(RetentionTasks.Member(RetentionTasks.Results, jobId), later);
        if ((decision.DeleteResults || decision.DeleteRecords) &&
            !await deleter.ExpireAsync(jobId, state.Tenant, state.FinishedMs!.Value, decision.DeleteRecords, decision.DeleteResults, cancellationToken))
        {
            // Retried (or deleted) since the state was read: what it decided from is gone; look again later.
            await schedule.DueAsync(member, now + (long)options.Value.Recheck.TotalMilliseconds);
            return;
        }
        if (decision.DeleteRecords)
            logger.LogInformation("Job {JobId} expired: records deleted{Results}", jobId,
                decision.DeleteResults ? " with its images" : decision.ResultsDueMs is null ? "" : ", images later");
        else if (decision.NextCheckMs is { } next) await schedule.DueAsync(member, next);
        else await schedule.ForgetAsync(member);
    }

    /// <summary>
    /// Workers offline for <see cref="RetentionOptions.Workers"/> leave the registry with their measured render speeds;
    /// idle consumers of their streams go too.
    /// </summary>
    private async Task ForgetGoneWorkersAsync(long now)
    {
        if (options.Value.Workers is not { } period) return;
        var all = await workers.ListAsync();
        foreach (var model in all.SelectMany(w => w.Models).Distinct(StringComparer.Ordinal))
            await queue.ForgetIdleConsumersAsync(model, period);
        foreach (var gone in all.Where(w => w.State == WorkerState.Offline && now - w.LastSeenUnixMs > period.TotalMilliseconds))
            await Task.WhenAll(workers.ForgetAsync(gone.WorkerId), rates.ForgetAsync(gone.WorkerId, gone.Models));
    }
}
