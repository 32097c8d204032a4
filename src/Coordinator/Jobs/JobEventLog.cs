using System.Globalization;
using RenderFarm.Protocol;
using StackExchange.Redis;
using RenderFarm.FarmState;
using RenderFarm.FarmState.Jobs;
using E = RenderFarm.FarmState.Jobs.JobEventFields;
using T = RenderFarm.FarmState.Jobs.JobEventTypes;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// A job's event streams in Redis: <see cref="FarmKeys.JobEvents"/>, kept with the job, and the per-step progress of
/// <see cref="FarmKeys.JobProgress"/>, kept only while the job runs. Entries are flat field maps
/// (<see cref="JobEventTypes"/>, <see cref="JobEventFields"/>), so Lua scripts can append them too; this class maps
/// them to and from <see cref="JobEvent"/>, and merges the two streams for watchers in the order they were written.
/// </summary>
public sealed class JobEventLog(IConnectionMultiplexer redis)
{
    /// <summary>About how many progress events a running job keeps: watchers need the latest, not the history.</summary>
    public const int ProgressKept = 1000;

    /// <summary>Appends an event to an unfinished job (one round trip) and wakes its watchers; false if there is no such job or it has finished.</summary>
    public async Task<bool> AppendAsync(string jobId, params NameValueEntry[] fields) =>
        (int)await JobScripts.AppendEvent.EvaluateAsync(redis.GetDatabase(),
            [FarmKeys.JobMeta(jobId), FarmKeys.JobEvents(jobId)],
            [.. fields.SelectMany(f => new[] { f.Name, f.Value })]) == 1;

    /// <summary>Appends a per-step progress event to an unfinished job and wakes its watchers; false if there is no such job or it has finished.</summary>
    public async Task<bool> AppendProgressAsync(string jobId, params NameValueEntry[] fields) =>
        (int)await JobScripts.AppendProgress.EvaluateAsync(redis.GetDatabase(),
            [FarmKeys.JobMeta(jobId), FarmKeys.JobProgress(jobId), FarmKeys.JobEvents(jobId)],
            [ProgressKept, .. fields.SelectMany(f => new[] { f.Name, f.Value })]) == 1;

    public static NameValueEntry[] Queued(uint images, uint shards) =>
        [new(E.Type, T.Queued), new(E.Images, images), new(E.Shards, shards)];

    public static NameValueEntry[] ShardStarted(uint shard, string worker, uint images, string stage) =>
        stage.Length == 0
            ? [new(E.Type, T.ShardStarted), new(E.Shard, shard), new(E.Worker, worker), new(E.Images, images)]
            : [new(E.Type, T.ShardStarted), new(E.Shard, shard), new(E.Worker, worker), new(E.Images, images), new(E.Stage, stage)];

    public static NameValueEntry[] Step(uint shard, string worker, uint step, uint total, float itPerSec) =>
        [new(E.Type, T.Step), new(E.Shard, shard), new(E.Worker, worker), new(E.Step, step), new(E.TotalSteps, total),
         new(E.ItPerSec, itPerSec.ToString("R", CultureInfo.InvariantCulture))];

    public static NameValueEntry[] AttemptFailed(uint shard, string worker, long attempt, int maxAttempts, FailureKind kind, string error) =>
        [new(E.Type, T.AttemptFailed), new(E.Shard, shard), new(E.Worker, worker), new(E.Attempt, attempt),
         new(E.MaxAttempts, maxAttempts), new(E.Kind, (int)kind), new(E.Error, error.Length > 2000 ? error[..2000] : error)];

    /// <summary>
    /// Checks a client's resume point: an event id as <see cref="JobEvent.EventId"/> gives them ("MS-SEQ"), no later
    /// than the job's last event. Anything else is INVALID_ARGUMENT: a malformed id would fail in Redis, and a future
    /// one would wait for events that are never read back (the job's end among them).
    /// </summary>
    public async Task CheckResumePointAsync(string jobId, string afterId)
    {
        if (afterId.Length == 0) return;
        if (ParseId(afterId) is not { } after)
            throw BatchValidator.Invalid($"after_event_id '{BatchValidator.Truncate(afterId)}' is not an event id (MS-SEQ, as events carry in event_id)");
        var last = await redis.GetDatabase().StreamRangeAsync(FarmKeys.JobEvents(jobId), "-", "+", 1, Order.Descending);
        if (last.Length == 0 || ParseId(last[0].Id!) is not { } newest || after.CompareTo(newest) > 0)
            throw BatchValidator.Invalid($"after_event_id '{afterId}' is after the job's last event" +
                                         (last.Length == 0 ? "" : $" ({last[0].Id}); resume from an event_id this job sent"));
    }

    /// <summary>A stream id "MS-SEQ" (or "MS") as a comparable pair; null if it is not one.</summary>
    private static (ulong Ms, ulong Seq)? ParseId(string id)
    {
        var dash = id.IndexOf('-');
        var (ms, seq) = dash < 0 ? (id, "0") : (id[..dash], id[(dash + 1)..]);
        return ms.Length is > 0 and <= 20 && seq.Length is > 0 and <= 20 && ms.All(char.IsAsciiDigit) && seq.All(char.IsAsciiDigit)
               && ulong.TryParse(ms, NumberStyles.None, CultureInfo.InvariantCulture, out var m)
               && ulong.TryParse(seq, NumberStyles.None, CultureInfo.InvariantCulture, out var q)
            ? (m, q)
            : null;
    }

    /// <summary>
    /// Reads up to <paramref name="count"/> events of each stream after <paramref name="after"/>, merged in the order
    /// they were written (stream ids share Redis's clock): only as far as both streams are read, so a full page of one
    /// never skips ahead of the other. Progress events carry no event id: they are not resume points (a watch resumed
    /// after an event gets the progress written after it, which is all that matters of progress).
    /// </summary>
    public async Task<EventPage> ReadAsync(string jobId, EventCursor after, int count)
    {
        var db = redis.GetDatabase();
        var eventsRead = db.StreamReadAsync(FarmKeys.JobEvents(jobId), Position(after.Events), count);
        var progressRead = db.StreamReadAsync(FarmKeys.JobProgress(jobId), Position(after.Progress), count);
        var (events, progress) = (await eventsRead, await progressRead);
        (ulong, ulong)? until = null;
        foreach (var page in new[] { events, progress })
            if (page.Length == count && ParseId(page[^1].Id!) is { } last && (until is null || last.CompareTo(until.Value) < 0))
                until = last;
        var merged = events.Select(e => (Entry: e, Progress: false)).Concat(progress.Select(e => (Entry: e, Progress: true)))
            .Select(x => (x.Entry, x.Progress, Id: ParseId(x.Entry.Id!) ?? default))
            .Where(x => until is null || x.Id.CompareTo(until.Value) <= 0)
            .OrderBy(x => x.Id).ThenBy(x => x.Progress);
        var result = new List<WatchedEvent>();
        var cursor = after;
        foreach (var (entry, isProgress, _) in merged)
        {
            cursor = isProgress ? cursor with { Progress = entry.Id! } : cursor with { Events = entry.Id! };
            if (Decode(entry) is not { } e) continue;
            if (isProgress) e.EventId = "";
            result.Add(new WatchedEvent(e, cursor));
        }
        return new EventPage(result, ReachedEnd: until is null);
    }

    private static string Position(string afterId) => string.IsNullOrEmpty(afterId) ? "0-0" : afterId;

    public static JobEvent? Decode(StreamEntry entry)
    {
        var fields = entry.Values.ToDictionary(v => (string)v.Name!, v => v.Value);
        string S(string name) => fields.TryGetValue(name, out var v) ? (string?)v ?? "" : "";
        uint U(string name) => uint.TryParse(S(name), CultureInfo.InvariantCulture, out var v) ? v : 0;
        long L(string name) => long.TryParse(S(name), CultureInfo.InvariantCulture, out var v) ? v : 0;

        var e = new JobEvent { EventId = entry.Id!, UnixMs = StreamIdMilliseconds(entry.Id!) };
        switch (S(E.Type))
        {
            case T.Queued: e.Queued = new JobQueued { ImageCount = U(E.Images), ShardCount = U(E.Shards) }; break;
            case T.ShardStarted:
                e.ShardStarted = new ShardStarted { ShardIndex = U(E.Shard), WorkerId = S(E.Worker), ImageCount = U(E.Images), Stage = S(E.Stage) };
                break;
            case T.Step:
                e.Step = new StepProgress
                {
                    ShardIndex = U(E.Shard), WorkerId = S(E.Worker), Step = U(E.Step), TotalSteps = U(E.TotalSteps),
                    ItPerSec = float.TryParse(S(E.ItPerSec), CultureInfo.InvariantCulture, out var f) ? f : 0,
                };
                break;
            case T.ImageDone:
                e.ImageDone = new ImageDone
                {
                    Index = U(E.Index), ShardIndex = U(E.Shard), WorkerId = S(E.Worker), Sha256 = S(E.Sha256), ImagesDone = U(E.Done),
                    RenderSeconds = L(E.DeviceMicroseconds) / 1e6,
                };
                break;
            case T.ImageFailed:
                e.ImageFailed = new ImageFailed { Index = U(E.Index), ShardIndex = U(E.Shard), Error = S(E.Error), ImagesFailed = U(E.Failed) };
                break;
            case T.AttemptFailed:
                e.AttemptFailed = new ShardAttemptFailed
                {
                    ShardIndex = U(E.Shard), WorkerId = S(E.Worker), Attempt = U(E.Attempt), MaxAttempts = U(E.MaxAttempts), Error = S(E.Error),
                    Kind = (FailureKind)U(E.Kind) is var kind && Enum.IsDefined(kind) ? kind : FailureKind.Unspecified,
                };
                break;
            case T.StateChanged: e.StateChanged = new JobStateChanged { State = JobStates.ToProto(S(E.State)) }; break;
            case T.ShardDone: e.ShardDone = new ShardDone { ShardIndex = U(E.Shard) }; break;
            case T.JobFinished:
                e.JobFinished = new JobFinished
                {
                    State = JobStates.ToProto(S(E.State)), ImagesDone = U(E.Done), ImagesFailed = U(E.Failed),
                    DeviceSeconds = L(E.DeviceMicroseconds) / 1e6,
                };
                break;
            default: return null; // written by a newer coordinator: skip rather than fail the watcher
        }
        return e;
    }

    private static long StreamIdMilliseconds(string id) =>
        long.TryParse(id.AsSpan(0, Math.Max(0, id.IndexOf('-'))), CultureInfo.InvariantCulture, out var ms) ? ms : 0;
}
