using System.Globalization;
using RenderFarm.Protocol;
using RenderFarm.Shared;
using StackExchange.Redis;
using RenderFarm.FarmState;
using RenderFarm.FarmState.Jobs;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// A job's event stream in Redis (<c>{job:ID}:events</c>). Entries are flat field maps, so Lua scripts can append
/// them too; this class maps them to and from <see cref="JobEvent"/>.
/// </summary>
public sealed class JobEventLog(IConnectionMultiplexer redis)
{
    public const string TypeField = "type";

    // KEYS: meta, events. ARGV: the entry's field/value pairs. A report that arrives after its job was deleted must
    // not leave a stray stream behind, and one that arrives after the job finished (a worker still stepping until the
    // cancel reaches it, a duplicate delivery) must not follow job_finished: watchers take a job_finished with events
    // after it for a retried job and keep reading. So the checks and the append are one step.
    private const string AppendScript = $$"""
        if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
        local state = redis.call('HGET', KEYS[1], 'state')
        if state == '{{JobStates.Completed}}' or state == '{{JobStates.Failed}}' or state == '{{JobStates.Cancelled}}' then return 0 end
        redis.call('XADD', KEYS[2], '*', unpack(ARGV))
        redis.call('PUBLISH', '{{FarmKeys.JobEventsChannel}}', KEYS[2])
        return 1
        """;

    /// <summary>Appends an event to an unfinished job (one round trip) and wakes its watchers; false if there is no such job or it has finished.</summary>
    public async Task<bool> AppendAsync(string jobId, params NameValueEntry[] fields) =>
        (int)await redis.GetDatabase().ScriptEvaluateAsync(AppendScript,
            [FarmKeys.JobMeta(jobId), FarmKeys.JobEvents(jobId)],
            [.. fields.SelectMany(f => new[] { f.Name, f.Value })]) == 1;

    public static NameValueEntry[] Queued(uint images, uint shards) =>
        [new(TypeField, "queued"), new("images", images), new("shards", shards)];

    public static NameValueEntry[] ShardStarted(uint shard, string worker, uint images) =>
        [new(TypeField, "shard_started"), new("shard", shard), new("worker", worker), new("images", images)];

    public static NameValueEntry[] Step(uint shard, string worker, uint step, uint total, float itPerSec) =>
        [new(TypeField, "step"), new("shard", shard), new("worker", worker), new("step", step), new("total", total),
         new("itps", itPerSec.ToString("R", CultureInfo.InvariantCulture))];

    public static NameValueEntry[] AttemptFailed(uint shard, string worker, long attempt, int maxAttempts, FailureKind kind, string error) =>
        [new(TypeField, "attempt_failed"), new("shard", shard), new("worker", worker), new("attempt", attempt),
         new("max", maxAttempts), new("kind", (int)kind), new("error", error.Length > 2000 ? error[..2000] : error)];

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

    /// <summary>Reads up to <paramref name="count"/> events after <paramref name="afterId"/> (null = from the start).</summary>
    public async Task<IReadOnlyList<JobEvent>> ReadAsync(string jobId, string? afterId, int count)
    {
        var entries = await redis.GetDatabase().StreamReadAsync(
            FarmKeys.JobEvents(jobId), string.IsNullOrEmpty(afterId) ? "0-0" : afterId, count);
        var events = new List<JobEvent>(entries.Length);
        foreach (var entry in entries)
            if (Decode(entry) is { } e) events.Add(e);
        return events;
    }

    public static JobEvent? Decode(StreamEntry entry)
    {
        var fields = entry.Values.ToDictionary(v => (string)v.Name!, v => v.Value);
        string S(string name) => fields.TryGetValue(name, out var v) ? (string?)v ?? "" : "";
        uint U(string name) => uint.TryParse(S(name), CultureInfo.InvariantCulture, out var v) ? v : 0;

        var e = new JobEvent { EventId = entry.Id!, UnixMs = StreamIdMilliseconds(entry.Id!) };
        switch (S(TypeField))
        {
            case "queued": e.Queued = new JobQueued { ImageCount = U("images"), ShardCount = U("shards") }; break;
            case "shard_started":
                e.ShardStarted = new ShardStarted { ShardIndex = U("shard"), WorkerId = S("worker"), ImageCount = U("images") };
                break;
            case "step":
                e.Step = new StepProgress
                {
                    ShardIndex = U("shard"), WorkerId = S("worker"), Step = U("step"), TotalSteps = U("total"),
                    ItPerSec = float.TryParse(S("itps"), CultureInfo.InvariantCulture, out var f) ? f : 0,
                };
                break;
            case "image_done":
                e.ImageDone = new ImageDone
                {
                    Index = U("index"), ShardIndex = U("shard"), WorkerId = S("worker"), Sha256 = S("sha256"), ImagesDone = U("done"),
                };
                break;
            case "image_failed":
                e.ImageFailed = new ImageFailed { Index = U("index"), ShardIndex = U("shard"), Error = S("error"), ImagesFailed = U("failed") };
                break;
            case "attempt_failed":
                e.AttemptFailed = new ShardAttemptFailed
                {
                    ShardIndex = U("shard"), WorkerId = S("worker"), Attempt = U("attempt"), MaxAttempts = U("max"), Error = S("error"),
                    Kind = (FailureKind)U("kind") is var kind && Enum.IsDefined(kind) ? kind : FailureKind.Unspecified,
                };
                break;
            case "state_changed": e.StateChanged = new JobStateChanged { State = JobStateMapping.ToProto(S("state")) }; break;
            case "shard_done": e.ShardDone = new ShardDone { ShardIndex = U("shard") }; break;
            case "job_finished":
                e.JobFinished = new JobFinished { State = JobStateMapping.ToProto(S("state")), ImagesDone = U("done"), ImagesFailed = U("failed") };
                break;
            default: return null; // written by a newer coordinator: skip rather than fail the watcher
        }
        return e;
    }

    private static long StreamIdMilliseconds(string id) =>
        long.TryParse(id.AsSpan(0, Math.Max(0, id.IndexOf('-'))), CultureInfo.InvariantCulture, out var ms) ? ms : 0;
}

internal static class JobStateMapping
{
    public static JobState ToProto(string state) => state switch
    {
        JobStates.Queued => JobState.Queued,
        JobStates.Running => JobState.Running,
        JobStates.Completed => JobState.Completed,
        JobStates.Failed => JobState.Failed,
        JobStates.Cancelled => JobState.Cancelled,
        JobStates.Paused => JobState.Paused,
        _ => JobState.Unspecified,
    };
}
