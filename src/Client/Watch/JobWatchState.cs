using RenderFarm.Protocol;

namespace RenderFarm.Client.Watch;

/// <summary>
/// What a watcher knows about a job, folded from its events. Pure state machine, no transport: <see cref="Apply"/>
/// ignores events at or before the last one applied, so a resumed or replayed stream never counts an image twice.
/// </summary>
public sealed class JobWatchState
{
    private const int RateWindow = 32;
    private readonly SortedDictionary<uint, ActiveShard> _active = new();
    private readonly Queue<(long UnixMs, uint Finished)> _finishTimes = new();
    private readonly HashSet<uint> _doneShards = [];
    private bool _queued;

    public string? LastEventId { get; private set; }
    public uint ImageCount { get; private set; }
    public uint ShardCount { get; private set; }
    public uint ImagesDone { get; private set; }
    public uint ImagesFailed { get; private set; }

    /// <summary>How many times the job was re-opened for its failed images (<c>farm retry</c>) in the events seen.</summary>
    public int Retries { get; private set; }
    public uint ShardsDone => (uint)_doneShards.Count;
    public long LastEventUnixMs { get; private set; }

    /// <summary>Set by the job's final event; null while the job runs.</summary>
    public JobState? FinalState { get; private set; }

    public bool IsFinished => FinalState is not null;

    /// <summary>True once any worker has taken a shard (started, stepped or finished an image).</summary>
    public bool AnyShardStarted { get; private set; }
    public int EventsApplied { get; private set; }
    public int DuplicatesIgnored { get; private set; }
    public IReadOnlyCollection<ActiveShard> ActiveShards => _active.Values;

    /// <summary>
    /// Images finished (done or failed) per second over the recent window, from the events' own timestamps so a
    /// replay of an old job reports the rate it ran at. Null until two finishes are known.
    /// </summary>
    public double? ImagesPerSecond
    {
        get
        {
            if (_finishTimes.Count < 2)
            {
                return null;
            }

            var first = _finishTimes.Peek();
            var last = _finishTimes.Last();
            var seconds = (last.UnixMs - first.UnixMs) / 1000.0;
            return seconds > 0 ? (last.Finished - first.Finished) / seconds : null;
        }
    }

    /// <summary>The coordinator's latest estimate of the job's completion (Unix ms; 0: none), carried by its events.</summary>
    public long EstimatedCompletionUnixMs { get; private set; }

    /// <summary>
    /// Time left: the coordinator's estimate when it sent one (it knows the queue ahead of the job and the workers'
    /// measured speed), else the rate at which this job's images have been finishing; null when neither is known.
    /// </summary>
    public TimeSpan? Eta
    {
        get
        {
            var remaining = (long)ImageCount - ImagesDone - ImagesFailed;
            if (IsFinished || remaining <= 0)
            {
                return IsFinished || ImageCount > 0 ? TimeSpan.Zero : null;
            }

            if (EstimatedCompletionUnixMs > 0)
            {
                return TimeSpan.FromMilliseconds(Math.Max(0, EstimatedCompletionUnixMs - LastEventUnixMs));
            }

            return ImagesPerSecond is > 0 and var rate ? TimeSpan.FromSeconds(remaining / rate) : null;
        }
    }

    /// <summary>Folds one event in. Returns false (and changes nothing) for an event already seen.</summary>
    public bool Apply(JobEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        if (LastEventId is not null && !string.IsNullOrEmpty(e.EventId) && EventIds.Compare(e.EventId, LastEventId) <= 0)
        {
            DuplicatesIgnored++;
            return false;
        }

        if (!string.IsNullOrEmpty(e.EventId))
        {
            LastEventId = e.EventId;
        }

        EventsApplied++;
        LastEventUnixMs = Math.Max(LastEventUnixMs, e.UnixMs);
        if (e.EstimatedCompletionUnixMs > 0)
        {
            EstimatedCompletionUnixMs = e.EstimatedCompletionUnixMs;
        }
        AnyShardStarted |= e.KindCase is JobEvent.KindOneofCase.ShardStarted or JobEvent.KindOneofCase.Step
            or JobEvent.KindOneofCase.ImageDone or JobEvent.KindOneofCase.ImageFailed or JobEvent.KindOneofCase.ShardDone;
        switch (e.KindCase)
        {
            case JobEvent.KindOneofCase.Queued when _queued:
                // A retry: its images are the failed ones, queued again in shards numbered after the job's others.
                ImagesFailed -= Math.Min(ImagesFailed, e.Queued.ImageCount);
                ShardCount += e.Queued.ShardCount;
                FinalState = null;
                Retries++;
                break;
            case JobEvent.KindOneofCase.Queued:
                _queued = true;
                ImageCount = e.Queued.ImageCount;
                ShardCount = e.Queued.ShardCount;
                break;
            case JobEvent.KindOneofCase.ShardStarted:
                var started = e.ShardStarted;
                _active[started.ShardIndex] = new ActiveShard(
                    started.ShardIndex, started.WorkerId, started.ImageCount, 0, 0, 0);
                break;
            case JobEvent.KindOneofCase.Step:
                var step = e.Step;
                _active.TryGetValue(step.ShardIndex, out var shard);
                _active[step.ShardIndex] = new ActiveShard(
                    step.ShardIndex,
                    string.IsNullOrEmpty(step.WorkerId) ? shard?.WorkerId ?? "" : step.WorkerId,
                    shard?.ImageCount ?? 0, step.Step, step.TotalSteps, step.ItPerSec);
                break;
            case JobEvent.KindOneofCase.ImageDone:
                // The coordinator's running count is authoritative; fall back to counting if it sent none.
                ImagesDone = e.ImageDone.ImagesDone > 0 ? Math.Max(ImagesDone, e.ImageDone.ImagesDone) : ImagesDone + 1;
                RecordFinish(e.UnixMs);
                break;
            case JobEvent.KindOneofCase.ImageFailed:
                ImagesFailed = e.ImageFailed.ImagesFailed > 0
                    ? Math.Max(ImagesFailed, e.ImageFailed.ImagesFailed)
                    : ImagesFailed + 1;
                RecordFinish(e.UnixMs);
                break;
            case JobEvent.KindOneofCase.ShardDone:
                _active.Remove(e.ShardDone.ShardIndex);
                _doneShards.Add(e.ShardDone.ShardIndex);

                break;
            case JobEvent.KindOneofCase.JobFinished:
                var finished = e.JobFinished;
                FinalState = finished.State;
                ImagesDone = Math.Max(ImagesDone, finished.ImagesDone);
                ImagesFailed = Math.Max(ImagesFailed, finished.ImagesFailed);
                _active.Clear();
                break;
        }

        return true;
    }

    private void RecordFinish(long unixMs)
    {
        if (unixMs <= 0)
        {
            return;
        }

        _finishTimes.Enqueue((unixMs, ImagesDone + ImagesFailed));
        while (_finishTimes.Count > RateWindow)
        {
            _finishTimes.Dequeue();
        }
    }
}
