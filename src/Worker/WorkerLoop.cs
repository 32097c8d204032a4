using System.Threading.Channels;
using Microsoft.Extensions.Options;
using RenderFarm.FarmState.TaskStreams;
using StackExchange.Redis;

namespace RenderFarm.Worker;

/// <summary>
/// Keeps the device busy with one shard after another, and everything else off its path. Three things go on at once:
/// <list type="bullet">
/// <item>the device renders shard N (<see cref="ShardRunner.RenderAsync(HeldShard, Task{bool}, CancellationToken)"/>), from
/// the moment it is free: the shard's start and admission run beside the render (<see cref="StartBesideRenderAsync"/>);</item>
/// <item>shard N−1's images are encoded and sent, then its end (<see cref="ShardCompletion"/>): at most that one, so a
/// slow coordinator holds the device back rather than letting finished images pile up;</item>
/// <item>up to <see cref="WorkerOptions.Prefetch"/> next shards are already pulled and their requests made (inputs
/// fetched), so shard N+1 starts the moment the device is free.</item>
/// </list>
/// A pulled-ahead shard is claimed under the worker's prefetch consumer: renewed like any claim, handed back on drain
/// or quarantine, dropped if its job is cancelled or its claim lost, and counted as a delivery (an attempt) only when it
/// starts (<see cref="ShardQueue.StartPrefetchedAsync"/>); a worker that dies holding one costs it no attempt.
/// <para>Every held shard's lease is renewed. On shutdown the worker stops pulling and hands back what it pulled ahead;
/// the shards it started get the host's shutdown timeout to finish, and are handed back for another worker if they
/// cannot. A shard whose claim another worker took over (this one stalled past its lease) is stopped within a renewal
/// period: the new holder renders it, and rendering it twice would only waste the device. A render that makes no
/// progress for the stall timeout is given up the same way, reported as a failed attempt, and the worker then takes no
/// more shards (<see cref="RenderWatchdog"/>).</para>
/// </summary>
public sealed class WorkerLoop(
    ShardPuller puller,
    ShardQueue queue,
    ShardRequestBuilder requests,
    ShardRunner runner,
    CoordinatorLink link,
    RenderWatchdog watchdog,
    QuarantineGate quarantine,
    PullAheadTimer pullAhead,
    IOptions<WorkerOptions> options,
    ILogger<WorkerLoop> logger) : BackgroundService
{
    private readonly Lock _lock = new();
    private readonly List<HeldShard> _held = [];
    private HeldShard? _rendering;
    private int _readyCount; // shards pulled ahead and not yet taken by the device (the channel's reader cannot count)
    private CancellationTokenSource? _stopPulling;

    /// <summary>Redis failures in a row fetching a shard's inputs (by entry) after which it fails as an attempt.</summary>
    private const int MaxInputFetchFailures = 3;
    private readonly Dictionary<string, int> _inputFetchFailures = []; // the pull-ahead loop's alone

    private int CountInputFetchFailure(string entryId)
    {
        if (_inputFetchFailures.Count > 1024) _inputFetchFailures.Clear(); // entries other workers finished: forget them
        return _inputFetchFailures[entryId] = _inputFetchFailures.GetValueOrDefault(entryId) + 1;
    }

    /// <summary>Listens for cancels before the host reports started: since .NET 10 all of ExecuteAsync runs in the
    /// background, so a subscription there could come after other listeners (and after a cancel).</summary>
    public override Task StartAsync(CancellationToken cancellationToken)
    {
        link.JobCancelled += OnJobCancelled;
        return base.StartAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await StartPullerAsync(stoppingToken);
        logger.LogInformation("Worker {Worker} pulling shards ({Prefetch} ahead)", puller.WorkerId, options.Value.Prefetch);
        var ready = Channel.CreateUnbounded<HeldShard>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        // A place for each shard pulled ahead, and one for the shard the device takes next: a place frees up when a
        // shard leaves the device. With no prefetch, the next shard is pulled while the last one's images go out.
        using var places = new SemaphoreSlim(options.Value.Prefetch + 1);
        using var stopPulling = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        _stopPulling = stopPulling;
        var pulling = PullAheadAsync(ready, places, stopPulling.Token);
        var finishing = Task.CompletedTask; // the started shards' images and ends, one after another
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                if (watchdog.Tripped)
                {
                    // The hung call still holds the device: take nothing more until the orchestrator restarts this worker.
                    await stopPulling.CancelAsync();
                    await HandBackReadyAsync(ready.Reader);
                    await Task.Delay(Timeout.Infinite, stoppingToken).ContinueWith(_ => { }, TaskScheduler.Default);
                    break;
                }
                HeldShard next;
                try
                {
                    next = await ready.Reader.ReadAsync(stoppingToken);
                    Interlocked.Decrement(ref _readyCount);
                }
                catch (Exception e) when (e is OperationCanceledException or ChannelClosedException)
                {
                    break;
                }
                ShardCompletion? rendered;
                try
                {
                    rendered = await StartAndRenderAsync(next);
                }
                finally
                {
                    places.Release();
                }
                var before = finishing;
                if (rendered is not null) finishing = FinishAfterAsync(before, next, rendered);
                // Shard N−1 must be out before the device takes N+1: N's images then go out while N+1 renders. A stop
                // does not wait for it here (a coordinator that is down would hold it the whole grace period): the
                // shards pulled ahead go back at once, and the finally waits for the started ones' reports.
                try
                {
                    await before.WaitAsync(stoppingToken);
                }
                catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
                {
                    break;
                }
            }
        }
        finally
        {
            await stopPulling.CancelAsync();
            await pulling;
            await HandBackReadyAsync(ready.Reader);
            await finishing;
        }
    }

    /// <summary>
    /// Starts the puller (consumer groups, nudges), which needs Redis: while Redis is down or stalled this waits and tries
    /// again, as pulling does, instead of ending the loop (and with it the worker).
    /// </summary>
    private async Task StartPullerAsync(CancellationToken stoppingToken)
    {
        while (true)
        {
            try
            {
                await puller.StartAsync();
                return;
            }
            catch (Exception e) when (WorkerResilience.IsRedisFailure(e))
            {
                logger.LogWarning("Redis unavailable while starting to pull shards: {Message}; trying again", e.Message);
                await Task.Delay(TimeSpan.FromMilliseconds(options.Value.PollMilliseconds), stoppingToken);
            }
        }
    }

    /// <summary>
    /// Pulls shards ahead while there are places for them, each when the device will need it soon
    /// (<see cref="PullAheadTimer"/>), and renewed from the moment it is claimed.
    /// </summary>
    private async Task PullAheadAsync(Channel<HeldShard> ready, SemaphoreSlim places, CancellationToken token)
    {
        try
        {
            while (true)
            {
                await places.WaitAsync(token);
                await pullAhead.WaitUntilDueAsync(() => Volatile.Read(ref _readyCount), token);
                await quarantine.WaitUntilAdmittedAsync(token);
                if (watchdog.Tripped) break;
                var held = Hold(await puller.NextAsync(token));
                if (token.IsCancellationRequested)
                {
                    await HandBackAsync(held); // pulling stopped (a stall) while this claim was made
                    break;
                }
                try
                {
                    held.Prepared(await requests.BuildAsync(held.Claimed.Shard));
                    _inputFetchFailures.Remove(held.Claimed.EntryId);
                }
                catch (Exception e) when (WorkerResilience.IsRedisFailure(e) && CountInputFetchFailure(held.Claimed.EntryId) < MaxInputFetchFailures)
                {
                    // Redis failed, not the shard nor this worker: failing the shard would count an attempt and hold it
                    // against the worker (kind bug). Not started, it goes back without costing an attempt; if Redis
                    // cannot take it back either, its prefetch claim lapses to another worker (or this one) the same way.
                    logger.LogWarning("Could not fetch the inputs of shard {Job}/{Shard} from Redis: {Message}; handing it back",
                        held.Claimed.Shard.JobId, held.Claimed.Shard.ShardIndex, e.Message);
                    await StopRenewingAsync(held);
                    await HandBackAsync(held);
                    places.Release();
                    await Task.Delay(TimeSpan.FromMilliseconds(options.Value.PollMilliseconds), token);
                    continue;
                }
                catch (Exception e)
                {
                    // Also a Redis failure for the MaxInputFetchFailures-th time in a row: inputs that cannot be fetched
                    // in time at all must not cycle for ever without costing an attempt.
                    _inputFetchFailures.Remove(held.Claimed.EntryId);
                    held.Unpreparable(e);
                }
                Interlocked.Increment(ref _readyCount);
                ready.Writer.TryWrite(held);
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
        }
        finally
        {
            ready.Writer.TryComplete();
        }
    }

    /// <summary>
    /// Puts a pulled-ahead shard on the device at once, and starts it (counting its delivery) and admits it against its
    /// job's state beside the render (<see cref="StartBesideRenderAsync"/>). Null when it does not run (lost meanwhile,
    /// its job paused or cancelled, past its attempt limit: its render is then stopped, and nothing of it reported) or
    /// was stopped.
    /// </summary>
    private async Task<ShardCompletion?> StartAndRenderAsync(HeldShard held)
    {
        if (quarantine.Quarantined)
        {
            await StopRenewingAsync(held);
            await HandBackAsync(held);
            return null;
        }
        // Between shards the device waited on the start and the admission, two Redis round trips that cannot be one
        // (the stream and the job's keys are in different hash slots) nor sent together (Admit parks the shard, which
        // it may only do once the start said the claim is still ours). So they run while the device already renders:
        // the render's reports wait for their verdict, and a render they refuse is stopped and reports nothing.
        var starting = StartBesideRenderAsync(held);
        lock (_lock) _rendering = held;
        pullAhead.RenderStarted();
        logger.LogDebug("Shard {Job}/{Shard} taken by the device", held.Claimed.Shard.JobId, held.Claimed.Shard.ShardIndex);
        try
        {
            return await runner.RenderAsync(held, starting, held.Stop.Token);
        }
        catch (Exception e) when (e is OperationCanceledException or ChannelClosedException)
        {
            // Stopped; or, the worker stopping, its begin found the coordinator link closed. A refused shard was settled
            // by its start or admission (lost, parked, acknowledged); a started one is settled here, and let go either way.
            try
            {
                if (await starting) await StoppedAsync(held);
            }
            finally
            {
                Release(held);
            }
            return null;
        }
        finally
        {
            pullAhead.RenderEnded();
            lock (_lock) _rendering = null;
        }
    }

    /// <summary>
    /// Starts a shard the device is already rendering and admits it (<see cref="StartClaimAsync"/>): true once it is started,
    /// admitted and renewed under the started claim; false when it must not run, after stopping its render.
    /// <para>Why rendering before the verdict is safe: until this returns true, nothing of the render leaves the worker
    /// (<see cref="ShardRunner.RenderAsync(HeldShard, Task{bool}, CancellationToken)"/> holds its begin, steps, images
    /// and end), so a refused render is only device time thrown away. What decides whether the shard runs is unchanged
    /// and in the same order: the start, atomic in Redis, still says whether the claim is ours before Admit parks or
    /// drops anything, so a shard is never parked that a pause or another worker already holds. A pause or cancel that
    /// lands after the admission finds the shard running, as it did a moment later before. The attempt is counted by
    /// the start, a round trip after the device took the shard (well within its first step): a worker that dies in that
    /// window costs the shard no attempt, as one that dies while the shard waits pulled ahead does.</para>
    /// </summary>
    private async Task<bool> StartBesideRenderAsync(HeldShard held)
    {
        try
        {
            await StopRenewingAsync(held);
            if (await StartClaimAsync(held) is { } started)
            {
                held.Claimed = started;
                Renew(held);
                return true;
            }
        }
        catch (Exception e)
        {
            // Redis unreachable, or the worker stopping. Unknown whether the start landed: either way the claim is not renewed, and its lease lapses to another worker.
            logger.LogWarning("Could not start shard {Job}/{Shard}: {Message}", held.Claimed.Shard.JobId, held.Claimed.Shard.ShardIndex, e.Message);
        }
        logger.LogDebug("Shard {Job}/{Shard} not run: its render is stopped", held.Claimed.Shard.JobId, held.Claimed.Shard.ShardIndex);
        try { await held.Stop.CancelAsync(); }
        catch (ObjectDisposedException) { }
        return false;
    }

    /// <summary>The started claim, or null if the shard is not to run (it is then acknowledged, parked or lost).</summary>
    private async Task<ClaimedShard?> StartClaimAsync(HeldShard held)
    {
        var prefetched = held.Claimed;
        var claimed = await queue.StartPrefetchedAsync(prefetched, puller.WorkerId);
        if (claimed is null)
        {
            logger.LogInformation("Shard {Job}/{Shard} pulled ahead is no longer ours (taken over, or its job ended)",
                prefetched.Shard.JobId, prefetched.Shard.ShardIndex);
            return null;
        }
        if (!await puller.CheckRunnableAsync(claimed)) return null;
        if (claimed.LostBy is not null || claimed.PastAttemptLimit) await runner.ReportRedeliveredAsync(claimed);
        if (claimed.PastAttemptLimit)
        {
            // Not run: a shard that crashes or hangs its worker would take this one down too. The coordinator
            // dead-letters it; until it does, the entry stays pending here, and if that report is lost, the next
            // worker to take it over finds it past the limit as well.
            logger.LogError("Shard {Job}/{Shard} not run: delivery {Delivery} is past its attempt limit; it is dead-lettered",
                claimed.Shard.JobId, claimed.Shard.ShardIndex, claimed.Delivery);
            return null;
        }
        return claimed;
    }

    /// <summary>Sends a rendered shard's images and end once the shards before it are out.</summary>
    private async Task FinishAfterAsync(Task before, HeldShard held, ShardCompletion completion)
    {
        await before;
        lock (_lock) held.Reporting = true;
        try
        {
            await completion.FinishAsync(held.Stop.Token);
        }
        catch (OperationCanceledException)
        {
            await StoppedAsync(held);
        }
        catch (Exception e)
        {
            logger.LogError(e, "Reporting shard {Job}/{Shard} failed", held.Claimed.Shard.JobId, held.Claimed.Shard.ShardIndex);
        }
        finally
        {
            completion.Dispose();
            Release(held);
        }
    }

    /// <summary>
    /// A started shard was stopped before its last report: say why, or hand it back. A render that outlived the grace
    /// period ends after the coordinator link closed (<see cref="ChannelClosedException"/>): what cannot be said then
    /// is left to the lease.
    /// </summary>
    private async Task StoppedAsync(HeldShard held)
    {
        var claimed = held.Claimed;
        try
        {
            if (held.JobCancelled)
            {
                logger.LogInformation("Shard {Job}/{Shard} stopped: job cancelled", claimed.Shard.JobId, claimed.Shard.ShardIndex);
                await queue.AcknowledgeAsync(claimed);
                await runner.ReportCancelledAsync(claimed);
            }
            else if (held.Stalled)
            {
                // The watchdog already failed the delivery; the render gave up late, or never started its next step.
                logger.LogWarning("Stalled shard {Job}/{Shard} stopped", claimed.Shard.JobId, claimed.Shard.ShardIndex);
            }
            else if (held.LeaseLost)
            {
                logger.LogWarning("Shard {Job}/{Shard} stopped: its claim was taken over by another worker (lease lapsed)",
                    claimed.Shard.JobId, claimed.Shard.ShardIndex);
                await runner.ReportAbandonedAsync(claimed);
            }
            else
            {
                logger.LogInformation("Shard {Job}/{Shard} stopped before finishing; handing it back", claimed.Shard.JobId, claimed.Shard.ShardIndex);
                // Also after StopAsync handed it back: that repeats harmlessly, and is a no-op once another worker holds it.
                await queue.HandBackOnDrainAsync(claimed);
            }
        }
        catch (Exception e) when (WorkerResilience.IsRedisFailure(e) || e is OperationCanceledException or ChannelClosedException)
        {
            logger.LogWarning("Could not settle stopped shard {Entry}: {Message}", claimed.EntryId, e.Message);
        }
    }

    private HeldShard Hold(ClaimedShard claimed)
    {
        var held = new HeldShard(claimed);
        lock (_lock) _held.Add(held);
        Renew(held);
        return held;
    }

    private void Release(HeldShard held)
    {
        lock (_lock) _held.Remove(held);
        if (held.Renewal is { } renewal) renewal.Stop.Cancel(); // ends on its own; nothing waits for it
        held.Dispose();
    }

    /// <summary>Hands back the shards pulled ahead and not started (shutdown, a stall, quarantine): no attempt is counted.</summary>
    private async Task HandBackReadyAsync(ChannelReader<HeldShard> ready)
    {
        while (ready.TryRead(out var held))
        {
            await StopRenewingAsync(held);
            await HandBackAsync(held);
        }
    }

    private async Task HandBackAsync(HeldShard held)
    {
        try { await queue.HandBackOnDrainAsync(held.Claimed); }
        catch (Exception e) when (WorkerResilience.IsRedisFailure(e)) { logger.LogWarning("Could not hand back {Entry}: {Message}", held.Claimed.EntryId, e.Message); }
        Release(held);
    }

    private void Renew(HeldShard held)
    {
        var stop = new CancellationTokenSource();
        held.Renewal = (RenewWhileHeldAsync(held, held.Claimed, stop.Token), stop);
    }

    private static async Task StopRenewingAsync(HeldShard held)
    {
        if (held.Renewal is not { } renewal) return;
        held.Renewal = null;
        await renewal.Stop.CancelAsync();
        await renewal.Loop;
        renewal.Stop.Dispose();
    }

    private async Task RenewWhileHeldAsync(HeldShard held, ClaimedShard claimed, CancellationToken token)
    {
        var period = TimeSpan.FromSeconds(Math.Max(1, options.Value.LeaseSeconds / 3.0));
        try
        {
            while (true)
            {
                await Task.Delay(period, token);
                if (watchdog.Stalled() is { } idle && IsRendering(held))
                {
                    await GiveUpStalledAsync(held, idle);
                    return;
                }
                try
                {
                    // Not pending under this worker any more: taken over after a lapsed lease (the new holder renders
                    // it), or acknowledged because every image already has its outcome. Either way nothing this
                    // worker still does for the shard can count, so stop it.
                    if (!await queue.RenewAsync(claimed))
                    {
                        lock (_lock)
                        {
                            // Reporting: the coordinator acknowledged the shard from the images it got (or another
                            // worker took it over; the coordinator then refuses these reports): let them go out.
                            if (held.JobCancelled || held.Reporting || token.IsCancellationRequested) return;
                            held.LeaseLost = true;
                        }
                        await held.Stop.CancelAsync();
                        return;
                    }
                }
                catch (Exception e) when (WorkerResilience.IsRedisFailure(e))
                {
                    // A Redis blip (or stall) must not end the renewals: try again next period, the lease has room for it.
                    logger.LogWarning("Could not renew the lease of {Entry}: {Message}", claimed.EntryId, e.Message);
                }
            }
        }
        catch (OperationCanceledException) { }
        catch (ObjectDisposedException) { }
        catch (ChannelClosedException) { } // a stall given up while the worker stops: its report has nowhere to go
    }

    private bool IsRendering(HeldShard held)
    {
        lock (_lock) return _rendering == held;
    }

    /// <summary>
    /// Stops renewing a stalled shard and fails this delivery, so the coordinator hands it to another worker now (or,
    /// if the report cannot reach it, the lease lapses). The hung call may never return: nothing here waits for it.
    /// </summary>
    private async Task GiveUpStalledAsync(HeldShard held, TimeSpan idle)
    {
        lock (_lock)
        {
            if (_rendering != held || held.JobCancelled) return;
            held.Stalled = true;
        }
        await held.Stop.CancelAsync();
        // Nothing more for this worker, not even the shard it is failing now (handed back, it would look like any other).
        if (_stopPulling is { } pulling) await pulling.CancelAsync();
        HeldShard[] ahead;
        lock (_lock) ahead = [.. _held.Where(h => h != held && h.Claimed.Prefetched)];
        foreach (var next in ahead)
        {
            await StopRenewingAsync(next);
            await HandBackAsync(next);
        }
        // The same words on every worker (FailureAttribution takes the worker's name out): a shard that stalls two
        // workers is the shard's fault, and how long each went without progress would tell them apart.
        var error = $"render stalled on worker {puller.WorkerId}: no progress for longer than Farm:StallTimeoutSeconds";
        watchdog.Trip(error);
        logger.LogError("Shard {Job}/{Shard}: {Error} (none for {Idle:0} s; the timeout is {Timeout} s); giving it up, reporting unhealthy and taking no more shards",
            held.Claimed.Shard.JobId, held.Claimed.Shard.ShardIndex, error, idle.TotalSeconds, options.Value.StallTimeoutSeconds);
        await runner.ReportFailedAsync(held.Claimed, error);
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        // Past the grace period, stop the shards still running or reporting, and give their release a moment to reach Redis.
        await using var _ = cancellationToken.Register(() =>
        {
            lock (_lock)
                foreach (var held in _held) held.Stop.Cancel();
        });
        await base.StopAsync(cancellationToken);
        // Hand the unfinished shards back now rather than after the pipeline unwinds: a step can outlast what is left
        // of the process's life, and a shard left claimed waits a whole lease for another worker.
        HeldShard[] unfinished;
        lock (_lock) unfinished = [.. _held];
        foreach (var held in unfinished)
        {
            try { await queue.HandBackOnDrainAsync(held.Claimed); }
            catch (Exception e) { logger.LogWarning("Could not hand back {Entry}: {Message}", held.Claimed.EntryId, e.Message); }
        }
        if (ExecuteTask is { IsCompleted: false } running)
            await Task.WhenAny(running, Task.Delay(TimeSpan.FromSeconds(2), CancellationToken.None));
    }

    private void OnJobCancelled(string jobId)
    {
        lock (_lock)
        {
            foreach (var held in _held)
            {
                if (held.Claimed.Shard.JobId != jobId) continue;
                held.JobCancelled = true;
                held.Stop.Cancel();
            }
        }
    }
}
