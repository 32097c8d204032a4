using Microsoft.Extensions.Options;
using RenderFarm.FarmState.TaskStreams;
using StackExchange.Redis;

namespace RenderFarm.Worker;

/// <summary>
/// Pulls one shard at a time and runs it while renewing its lease. On shutdown it stops pulling; the running shard
/// gets the host's shutdown timeout to finish, and is handed back for another worker if it cannot. A shard whose
/// claim another worker took over (this one stalled past its lease) is stopped within a renewal period: the new
/// holder renders it, and rendering it twice would only waste the GPU. A render that makes no progress for the stall
/// timeout is given up the same way, reported as a failed attempt, and the worker then takes no more shards
/// (<see cref="RenderWatchdog"/>).
/// </summary>
public sealed class WorkerLoop(
    ShardPuller puller,
    ShardQueue queue,
    ShardRunner runner,
    CoordinatorLink link,
    RenderWatchdog watchdog,
    QuarantineGate quarantine,
    IOptions<WorkerOptions> options,
    ILogger<WorkerLoop> logger) : BackgroundService
{
    private CancellationTokenSource? _currentJob;
    private bool _jobCancelled;
    private bool _leaseLost;
    private bool _stalled;
    private ClaimedShard? _currentShard;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await puller.StartAsync();
        link.JobCancelled += OnJobCancelled;
        logger.LogInformation("Worker {Worker} pulling shards", puller.WorkerId);
        while (!stoppingToken.IsCancellationRequested)
        {
            if (watchdog.Tripped)
            {
                // The hung call still holds the device: take nothing more until the orchestrator restarts this worker.
                await Task.Delay(Timeout.Infinite, stoppingToken).ContinueWith(_ => { }, TaskScheduler.Default);
                break;
            }
            ClaimedShard claimed;
            try
            {
                await quarantine.WaitUntilAdmittedAsync(stoppingToken);
                claimed = await puller.NextAsync(stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            if (!await puller.CheckRunnableAsync(claimed)) continue;
            if (claimed.LostBy is not null || claimed.PastAttemptLimit) await runner.ReportRedeliveredAsync(claimed);
            if (claimed.PastAttemptLimit)
            {
                // Not run: a shard that crashes or hangs its worker would take this one down too. The coordinator
                // dead-letters it; until it does, the entry stays pending here, and if that report is lost, the next
                // worker to take it over finds it past the limit as well.
                logger.LogError("Shard {Job}/{Shard} not run: delivery {Delivery} is past its attempt limit; it is dead-lettered",
                    claimed.Shard.JobId, claimed.Shard.ShardIndex, claimed.Delivery);
                continue;
            }
            await RunClaimedAsync(claimed);
        }
    }

    private async Task RunClaimedAsync(ClaimedShard claimed)
    {
        // A shard is not abandoned just because shutdown began: it runs until the host's shutdown timeout expires
        // (see StopAsync) or its job is cancelled.
        using var shardCts = new CancellationTokenSource();
        lock (this) { _currentJob = shardCts; _currentShard = claimed; _jobCancelled = false; _leaseLost = false; _stalled = false; }
        var renewal = RenewWhileRunningAsync(claimed, shardCts.Token);
        try
        {
            await runner.RunAsync(claimed, puller.WorkerId, shardCts.Token);
        }
        catch (OperationCanceledException) when (_jobCancelled)
        {
            logger.LogInformation("Shard {Job}/{Shard} stopped: job cancelled", claimed.Shard.JobId, claimed.Shard.ShardIndex);
            await queue.AcknowledgeAsync(claimed);
            await runner.ReportCancelledAsync(claimed);
        }
        catch (OperationCanceledException) when (_stalled)
        {
            // The watchdog already failed the delivery; the render gave up late, or never started its next step.
            logger.LogWarning("Stalled shard {Job}/{Shard} stopped", claimed.Shard.JobId, claimed.Shard.ShardIndex);
        }
        catch (OperationCanceledException) when (_leaseLost)
        {
            logger.LogWarning("Shard {Job}/{Shard} stopped: its claim was taken over by another worker (lease lapsed)",
                claimed.Shard.JobId, claimed.Shard.ShardIndex);
            await runner.ReportAbandonedAsync(claimed);
        }
        catch (OperationCanceledException)
        {
            logger.LogInformation("Shard {Job}/{Shard} stopped before finishing; handing it back",
                claimed.Shard.JobId, claimed.Shard.ShardIndex);
            // Also after StopAsync handed it back: that repeats harmlessly, and is a no-op once another worker holds it.
            await queue.HandBackOnDrainAsync(claimed);
        }
        finally
        {
            lock (this) { _currentJob = null; _currentShard = null; }
            await shardCts.CancelAsync();
            await renewal;
        }
    }

    private async Task RenewWhileRunningAsync(ClaimedShard claimed, CancellationToken token)
    {
        var period = TimeSpan.FromSeconds(Math.Max(1, options.Value.LeaseSeconds / 3.0));
        try
        {
            while (true)
            {
                await Task.Delay(period, token);
                if (watchdog.Stalled() is { } idle)
                {
                    await GiveUpStalledAsync(claimed, idle);
                    return;
                }
                try
                {
                    // Not pending under this worker any more: taken over after a lapsed lease (the new holder renders
                    // it), or acknowledged because every image already has its outcome. Either way nothing this
                    // worker still does for the shard can count, so stop it.
                    if (!await queue.RenewAsync(claimed))
                    {
                        lock (this)
                        {
                            if (_currentShard != claimed || _jobCancelled) return;
                            _leaseLost = true;
                            _currentJob?.Cancel();
                        }
                        return;
                    }
                }
                catch (RedisException e)
                {
                    // A Redis blip must not end the renewals: try again next period, the lease has room for it.
                    logger.LogWarning("Could not renew the lease of {Entry}: {Message}", claimed.EntryId, e.Message);
                }
            }
        }
        catch (OperationCanceledException) { }
    }

    /// <summary>
    /// Stops renewing a stalled shard and fails this delivery, so the coordinator hands it to another worker now (or,
    /// if the report cannot reach it, the lease lapses). The hung call may never return: nothing here waits for it.
    /// </summary>
    private async Task GiveUpStalledAsync(ClaimedShard claimed, TimeSpan idle)
    {
        lock (this)
        {
            if (_currentShard != claimed || _jobCancelled) return;
            _stalled = true;
            _currentJob?.Cancel();
        }
        var error = $"render stalled on worker {puller.WorkerId}: no progress for {idle.TotalSeconds:0} s " +
                    $"(Farm:StallTimeoutSeconds is {options.Value.StallTimeoutSeconds})";
        watchdog.Trip(error);
        logger.LogError("Shard {Job}/{Shard}: {Error}; giving it up, reporting unhealthy and taking no more shards",
            claimed.Shard.JobId, claimed.Shard.ShardIndex, error);
        await runner.ReportFailedAsync(claimed, error);
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        // Past the grace period, stop the running shard and give its release a moment to reach Redis.
        await using var _ = cancellationToken.Register(() => { lock (this) _currentJob?.Cancel(); });
        await base.StopAsync(cancellationToken);
        // Hand the unfinished shard back now rather than after the pipeline unwinds: a step can outlast what is left
        // of the process's life, and a shard left claimed waits a whole lease for another worker.
        ClaimedShard? unfinished;
        lock (this) unfinished = _currentShard;
        if (unfinished is not null)
        {
            try { await queue.HandBackOnDrainAsync(unfinished); }
            catch (Exception e) { logger.LogWarning("Could not hand back {Entry}: {Message}", unfinished.EntryId, e.Message); }
        }
        if (ExecuteTask is { IsCompleted: false } running)
            await Task.WhenAny(running, Task.Delay(TimeSpan.FromSeconds(2), CancellationToken.None));
    }

    private void OnJobCancelled(string jobId)
    {
        lock (this)
        {
            if (_currentShard?.Shard.JobId != jobId) return;
            _jobCancelled = true;
            _currentJob?.Cancel();
        }
    }
}
