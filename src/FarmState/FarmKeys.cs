using RenderFarm.Protocol;

namespace RenderFarm.FarmState;

/// <summary>
/// The Redis key layout, in one place: every key and pub/sub channel the farm uses. Every key of one job carries the
/// hash tag <c>{job:ID}</c> so a script or transaction over a job's keys runs on Redis Cluster and managed Redis
/// unchanged. What the job keys hold is described with them; the fields of the job meta hash are
/// <see cref="Jobs.JobFields"/>, its states <see cref="Jobs.JobStates"/>, its events <see cref="Jobs.JobEventTypes"/>.
/// </summary>
public static partial class FarmKeys
{
    /// <summary>Consumer group that every worker joins on every task stream.</summary>
    public const string WorkerGroup = "workers";

    /// <summary>
    /// Consumer that holds a pending shard handed back on purpose (after a reported failure, or by a draining worker)
    /// until a worker takes it. A worker taking a shard over from any other consumer knows that consumer's lease lapsed.
    /// </summary>
    public const string ReleasedConsumer = ReservedConsumerMark + "released";

    /// <summary>
    /// What marks the farm's own consumer names (<see cref="ReleasedConsumer"/>, <see cref="WithdrawnConsumer"/>,
    /// <see cref="PrefetchConsumer"/>'s suffix). Barred from worker ids (<see cref="IsUsableWorkerId"/>): a worker named
    /// <c>~released</c> would take every handed-back shard for its own, and one named <c>x~prefetched</c> would pass for
    /// worker x's pull-ahead.
    /// </summary>
    public const string ReservedConsumerMark = "~";

    /// <summary>Whether a worker id can be a worker's consumer name: it cannot contain <see cref="ReservedConsumerMark"/>.</summary>
    public static bool IsUsableWorkerId(string workerId) => !workerId.Contains(ReservedConsumerMark, StringComparison.Ordinal);

    /// <summary>
    /// Consumer under which a worker holds the shards it has pulled ahead (prefetched) but not started: their delivery
    /// is not counted until they start, and a worker taking one over from it knows it was never started.
    /// </summary>
    public static string PrefetchConsumer(string workerId) => workerId + PrefetchSuffix;

    /// <summary>Whether a consumer name is a worker's <see cref="PrefetchConsumer"/>.</summary>
    public static bool IsPrefetchConsumer(string consumer) => consumer.EndsWith(PrefetchSuffix, StringComparison.Ordinal);

    private const string PrefetchSuffix = ReservedConsumerMark + "prefetched";

    /// <summary>Sorted set of one tenant's job ids by creation time (ms): what its listings show.</summary>
    public static string TenantJobIndex(string tenant) => $"jobs:tenant:{tenant}";

    /// <summary>Short-lived marker written after a job is committed: what WAITAOF waits for before it is acknowledged.</summary>
    public static string JobAcknowledged(string jobId) => $"{JobTag(jobId)}:acknowledged";

    /// <summary>
    /// Consumer that reads the tokens of shards withdrawn from a task stream (a cancelled or re-prioritised job's), and
    /// acknowledges them at once: the stream keeps one unread token per waiting shard.
    /// </summary>
    public const string WithdrawnConsumer = ReservedConsumerMark + "withdrawn";

    /// <summary>Set of a tenant's unfinished job ids: what its active-job and queued-image limits count.</summary>
    public static string TenantOpenJobs(string tenant) => $"tenant:{tenant}:open";

    /// <summary>Counter of a tenant's submissions in one minute (<paramref name="minute"/> since the epoch).</summary>
    public static string TenantSubmitRate(string tenant, long minute) => $"ratelimit:submit:{tenant}:{minute}";

    /// <summary>Hash: worker id → WorkerInfo (protobuf), written by the replica that holds the worker's stream.</summary>
    public const string WorkerRegistry = "workers";

    /// <summary>Hash: worker id → id of the API key that first registered it (a worker id belongs to one key).</summary>
    public const string WorkerIdOwners = "workers:keys";

    /// <summary>Sorted set of a worker's recent shard failures (by time): what quarantines it.</summary>
    public static string WorkerFailures(string workerId) => $"worker-failures:{workerId}";

    /// <summary>Pub/sub channel of control messages to workers (cancel, quarantine, release), for whichever replica holds the stream.</summary>
    public const string WorkerControlChannel = "farm:worker-control";

    /// <summary>
    /// Sorted set: job id → when its webhook is next due (ms; 0 while the job runs): the durable outbox. A job is
    /// added when it is submitted with a webhook (and again when it is retried) and leaves once its event was
    /// delivered or given up on, so a coordinator restart loses no event.
    /// </summary>
    public const string WebhookOutbox = "webhooks:outbox";

    /// <summary>Hash: tenant → the secret its webhooks are signed with (HMAC-SHA256).</summary>
    public const string WebhookSecrets = "auth:webhook-secrets";
    /// <summary>Hash: sha256 of an API key → its record (JSON). Keys are never stored, only their hashes.</summary>
    public const string ApiKeys = "auth:keys";

    /// <summary>Hash: API key id → sha256 of the key, to revoke a key by its id.</summary>
    public const string ApiKeyIds = "auth:key-ids";

    /// <summary>Pub/sub channel on which every revocation publishes the key's id.</summary>
    public const string ApiKeyRevokedChannel = "auth:revoked";

    /// <summary>Stream of normal-priority shards waiting for a worker that holds <paramref name="model"/>.</summary>
    public static string TaskStream(string model) => $"tasks:{model}";

    /// <summary>
    /// The model's stream for one priority: <c>tasks:MODEL</c> (normal), <c>{tasks:MODEL}:high</c>, <c>{tasks:MODEL}:low</c>.
    /// All three hash to one Redis Cluster slot (<c>tasks:MODEL</c> has no braces, so its whole name is its tag), with
    /// the fair queues behind them (<see cref="TaskQueuePrefix"/>), so that one script can move a job between priorities.
    /// </summary>
    public static string TaskStream(string model, Priority priority) => priority switch
    {
        Priority.High => $"{TaskTag(model)}:high",
        Priority.Low => $"{TaskTag(model)}:low",
        _ => TaskStream(model),
    };

    /// <summary>The hash tag every task-stream key of a model carries: <c>{tasks:MODEL}</c>.</summary>
    public static string TaskTag(string model) => $"{{tasks:{model}}}";

    /// <summary>Every task stream of a model, highest priority first.</summary>
    public static string[] TaskStreams(string model) =>
        [TaskStream(model, Priority.High), TaskStream(model, Priority.Normal), TaskStream(model, Priority.Low)];

    /// <summary>
    /// SCAN pattern matching every task stream (<c>tasks:MODEL</c>, <c>{tasks:MODEL}:high</c>, <c>{tasks:MODEL}:low</c>),
    /// with TYPE stream and <see cref="ParseTaskStream"/> to drop the other keys it matches.
    /// </summary>
    public const string TaskStreamPattern = "*tasks:*";

    /// <summary>The model and priority of a task stream's name; null for a name this layout does not produce.</summary>
    public static (string Model, Priority Priority)? ParseTaskStream(string stream)
    {
        var tagged = TaggedTaskStream().Match(stream);
        if (tagged.Success) return (tagged.Groups[1].Value, tagged.Groups[2].Value == "high" ? Priority.High : Priority.Low);
        return stream.StartsWith("tasks:", StringComparison.Ordinal) && stream.Length > "tasks:".Length && stream.IndexOfAny(['{', '}']) < 0
            ? (stream["tasks:".Length..], Priority.Normal)
            : null;
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"^\{tasks:([^{}]+)\}:(high|low)$")]
    private static partial System.Text.RegularExpressions.Regex TaggedTaskStream();

    /// <summary>True for names this layout produces: a worker-reported stream is only trusted if it is one of ours.</summary>
    public static bool IsTaskStreamOf(string stream, string model) => TaskStreams(model).Contains(stream);

    /// <summary>
    /// Where the fair queue behind a task stream keeps its keys (see <see cref="TaskStreams.ShardQueue"/>): the stream's
    /// tag and priority, e.g. <c>{tasks:sd15}:normal</c>. Scripts build the per-tenant and per-job keys below from it.
    /// </summary>
    public static string TaskQueuePrefix(string stream) =>
        ParseTaskStream(stream) is var (model, priority)
            ? $"{TaskTag(model)}:{priority switch { Priority.High => "high", Priority.Low => "low", _ => "normal" }}"
            : throw new ArgumentException($"'{stream}' is not a task stream", nameof(stream));

    /// <summary>Hash: entry id → the shard (protobuf bytes) bound to a delivered token entry of the stream, until acknowledged.</summary>
    public static string TaskBound(string stream) => $"{TaskQueuePrefix(stream)}:bound";

    /// <summary>Sorted set: tenant → its pass (virtual time) in the stream's fair queue, for tenants with shards waiting there.</summary>
    public static string TaskTenants(string stream) => $"{TaskQueuePrefix(stream)}:tenants";

    /// <summary>Hash: tenant → its weight in the stream's fair queue (its share of the turns), for tenants with shards waiting.</summary>
    public static string TaskWeights(string stream) => $"{TaskQueuePrefix(stream)}:weights";

    /// <summary>
    /// Hash: running totals of the work waiting in the stream's fair queue (image-steps × megapixels): <c>*</c> all of
    /// it, <c>t:TENANT</c> and <c>tn:TENANT</c> a tenant's work and shards, <c>j:JOB</c> a job's work. What completion
    /// estimates read instead of the queue itself (<see cref="TaskStreams.TaskStreamScripts.WorkAhead"/>).
    /// </summary>
    public static string TaskWork(string stream) => $"{TaskQueuePrefix(stream)}:work";

    /// <summary>String: the pass of the tenant served last; a tenant that starts waiting joins at it.</summary>
    public static string TaskClock(string stream) => $"{TaskQueuePrefix(stream)}:clock";

    /// <summary>What follows the prefix in <see cref="TaskTenantJobs"/> (and in the scripts that build that key).</summary>
    public const string TenantJobsPart = ":tenant:";

    /// <summary>What follows the prefix in <see cref="TaskJobShards"/> (and in the scripts that build that key).</summary>
    public const string JobShardsPart = ":job:";

    /// <summary>Sorted set: a tenant's jobs with shards waiting on the stream, by submission time (FIFO within the tenant).</summary>
    public static string TaskTenantJobs(string stream, string tenant) => $"{TaskQueuePrefix(stream)}{TenantJobsPart}{tenant}";

    /// <summary>List: a job's shards (protobuf bytes) waiting on the stream, in order.</summary>
    public static string TaskJobShards(string stream, string jobId) => $"{TaskQueuePrefix(stream)}{JobShardsPart}{jobId}";

    /// <summary>
    /// Set: the shards of a job whose refiner stage has been queued on the model's streams ("SHARD"), so that a base
    /// stage reported complete twice (a redelivery, two coordinators) queues it once. Under the model's tag, so the check
    /// and the enqueue are one script; it expires (<see cref="TaskStreams.ShardQueue.HandOffMemory"/>) long after any
    /// base stage could be redelivered.
    /// </summary>
    public static string TaskHandOffs(string model, string jobId) => $"{TaskTag(model)}:handoffs:{jobId}";

    /// <summary>Hash: tenant → weight (a positive number, 1 when absent), set by <c>keys weight</c>: its share of the farm within a priority.</summary>
    public const string TenantWeights = "tenant:weights";

    /// <summary>
    /// Hash: worker id → its measured render time for <paramref name="model"/>, in seconds per step per megapixel of
    /// one image (a moving average over the images it rendered): what completion estimates are made from.
    /// </summary>
    public static string RenderRates(string model) => $"rates:{model}";

    /// <summary>
    /// Hash: "VARIANT\nWORKER" → unix ms until which the worker is known to hold that model or LoRA variant loaded
    /// (<see cref="TaskStreams.ShardEntry.Variant"/>). Workers renew their own fields while they hold them; a worker reading
    /// a task stream leaves an entry briefly to the workers that hold its variant (<see cref="TaskStreams.ShardQueue.ReadPreferredAsync"/>).
    /// Outside the per-model families (<c>tasks:MODEL</c>, <c>{tasks:MODEL}:…</c>, <c>rates:MODEL</c>): a fixed key there
    /// is some model's key, as <see cref="LegacyWarmVariants"/> was.
    /// </summary>
    public const string WarmVariants = "workers:warm";

    /// <summary>
    /// Where workers before <see cref="WarmVariants"/> declared what they hold: the task stream of a model named
    /// <c>warm</c>, which then broke every worker's pull (WRONGTYPE). Its declarations lapse within seconds of the last
    /// such worker stopping; newer workers let the hash expire then (<see cref="TaskStreams.TaskStreamScripts.ForgetLegacyWarm"/>),
    /// and never touch a stream there.
    /// </summary>
    public const string LegacyWarmVariants = "tasks:warm";

    /// <summary>Pub/sub channel that nudges idle workers when shards for <paramref name="model"/> arrive.</summary>
    public static string TaskNudge(string model) => $"tasks:{model}:nudge";

    /// <summary>Pub/sub channel: each append to a job's event stream publishes the stream's key, waking its watchers.</summary>
    public const string JobEventsChannel = "jobs:events";

    /// <summary>
    /// Sorted set: retention work ("KIND:JOB", see <see cref="Retention.RetentionTasks"/>) → when it is next due (ms).
    /// Every job is entered when it is submitted; the coordinators' sweep takes what is due.
    /// </summary>
    public const string RetentionDue = "retention:due";

    /// <summary>Set once every job submitted before retention existed has been entered in <see cref="RetentionDue"/>.</summary>
    public const string RetentionBackfilled = "retention:backfilled";

    /// <summary>
    /// Sorted set: the commits in progress (<see cref="Commits.OpenCommit.Member"/>: a submission, a retry or a resume) →
    /// when each last made progress (ms, Redis's clock). A commit makes a job's work visible in several steps, since no
    /// one script can take them: the task streams live in other hash slots than the job's keys. It is entered before its
    /// first visible write, its score moves as it publishes each page of shards, and it leaves once it is complete,
    /// before its client is answered. An entry whose score stops moving is a commit whose coordinator stopped: every
    /// coordinator's recovery claims such entries (<see cref="Commits.CommitScripts.ClaimStale"/>) and settles their jobs
    /// (a submission rolled back, a retry or resume rolled forward).
    /// </summary>
    public const string CommitJournal = "commits:open";

    public static string JobTag(string jobId) => $"{{job:{jobId}}}";

    /// <summary>Hash: state, params, counts, timestamps.</summary>
    public static string JobMeta(string jobId) => $"{JobTag(jobId)}:meta";

    /// <summary>Hash: image index → serialized ImageTask (prompt, negative prompt, seed).</summary>
    public static string JobImages(string jobId) => $"{JobTag(jobId)}:images";

    /// <summary>Hash: image index → sha256 of the stored PNG. HSETNX on it makes the first result win.</summary>
    public static string JobResults(string jobId) => $"{JobTag(jobId)}:results";

    /// <summary>
    /// Hash: image index → "TOKEN:UNTIL_MS" while a coordinator checks what the result store holds for an image that has
    /// no outcome yet (a direct upload, <see cref="Jobs.JobScripts.ClaimResultChecks"/>) and may delete it; until it is
    /// released, or Redis's clock passes UNTIL_MS, no other check takes the image and no other result is recorded for it.
    /// </summary>
    public static string JobResultChecks(string jobId) => $"{JobTag(jobId)}:result-checks";

    /// <summary>Hash: image index → last error, for images that failed for good.</summary>
    public static string JobFailures(string jobId) => $"{JobTag(jobId)}:failures";

    /// <summary>Hash: shard index → images of the shard not yet finished.</summary>
    public static string JobShardsRemaining(string jobId) => $"{JobTag(jobId)}:shards";

    /// <summary>Stream of the job's events, read by WatchJob: everything but per-step progress, kept with the job.</summary>
    public static string JobEvents(string jobId) => $"{JobTag(jobId)}:events";

    /// <summary>
    /// Stream of the job's per-step progress events (<see cref="Jobs.JobEventTypes.Step"/>), capped, and deleted when the
    /// job finishes: WatchJob merges it with <see cref="JobEvents"/> while the job runs.
    /// </summary>
    public static string JobProgress(string jobId) => $"{JobTag(jobId)}:progress";

    /// <summary>
    /// List of serialized shards staged for the task streams (see <see cref="TaskStreams.ShardQueue"/>): the
    /// submission's (<paramref name="batch"/> empty) while it is being received, published on commit; a retry's (its
    /// own batch, so that concurrent retries never mix their shards) until the job is re-opened; a resume's (its own
    /// batch: the parked shards it took) until they are queued. Publishing drops each page once it is queued, so what
    /// is left is what is not queued yet; a commit cut short leaves it to recovery (<see cref="CommitJournal"/>).
    /// </summary>
    public static string JobStagedShards(string jobId, string batch = "") =>
        batch.Length == 0 ? $"{JobTag(jobId)}:staged" : $"{JobTag(jobId)}:staged:{batch}";

    /// <summary>
    /// How long staged keys live until the commit that publishes them makes its first write to the job: a submission's
    /// (shards, images, shard sizes, inputs) while it is being received, a retry's list until the re-open. That write
    /// persists them, in the same script (from then on the <see cref="CommitJournal"/> sees them published or deleted);
    /// a submission abandoned, or a retry whose commit was refused or never reached its re-open, leaves nothing for long.
    /// A resume's list is the parked list, moved by the resume itself.
    /// </summary>
    public static readonly TimeSpan StagingTtl = TimeSpan.FromHours(1);

    /// <summary>
    /// String: the token of a commit in progress (<see cref="Commits.OpenCommit"/>: <paramref name="batch"/> empty for a
    /// submission), in the job's hash slot, where the job's own scripts can check it. The journal (<see cref="CommitJournal"/>)
    /// says who holds a commit, but it lives in another slot, so the committer learns it lost its commit only at its next
    /// renewal, after whatever write it made meanwhile; the token closes that gap for the write that matters, the first
    /// one, which changes the job (a submission's meta, a retry's re-open, a resume). It is issued before the commit
    /// enters the journal; that first write takes it, in the same script, and changes nothing if it is gone. Recovery
    /// deletes it before it looks at the job (<see cref="Commits.CommitScripts.Fence"/>). Whichever comes first wins: a
    /// committer that stalled past the grace and wakes after recovery settled its commit is refused, and recovery settles
    /// from a job whose first write either happened already or never will. Completing a commit deletes what is left of it.
    /// </summary>
    public static string JobCommitToken(string jobId, string batch = "") =>
        batch.Length == 0 ? $"{JobTag(jobId)}:commit" : $"{JobTag(jobId)}:commit:{batch}";

    /// <summary>
    /// How long a commit's token (<see cref="JobCommitToken"/>) lives: its commit's first write comes milliseconds after it
    /// is issued. One that lapses first refuses that write, as recovery's fence would (the commit fails, nothing is half-done).
    /// </summary>
    public static readonly TimeSpan CommitTokenTtl = TimeSpan.FromHours(1);

    /// <summary>List of serialized shards held back while the job is paused; re-queued on resume.</summary>
    public static string JobParkedShards(string jobId) => $"{JobTag(jobId)}:parked";

    /// <summary>Hash: sha256 (hex) of an init image or mask → its bytes, for the job's img2img/inpainting images.</summary>
    public static string JobInputs(string jobId) => $"{JobTag(jobId)}:inputs";

    /// <summary>
    /// Set of the task streams the job has queued shards on (one per model and priority it used): cancelling or deleting
    /// it withdraws its waiting shards from them, re-prioritising moves them.
    /// </summary>
    public static string JobTaskStreams(string jobId) => $"{JobTag(jobId)}:streams";

    /// <summary>
    /// List of a job's stream entries that jobs queued before the fair queues kept; nothing writes it now, and deleting
    /// such a job deletes it with the rest.
    /// </summary>
    public static string LegacyJobTaskEntries(string jobId) => $"{JobTag(jobId)}:entries";

    /// <summary>
    /// Hash: "SHARD|SIGNATURE" → the workers (one per line) whose attempts at the shard failed that way. A second worker
    /// failing the same way makes the failure the shard's.
    /// </summary>
    public static string JobFailedAttempts(string jobId) => $"{JobTag(jobId)}:failed-attempts";

    /// <summary>
    /// Hash: image index → the latest live preview of an image still rendering (<see cref="Jobs.PreviewScripts"/>), only for
    /// jobs submitted with previews. Dropped image by image as images finish, whole when the job does.
    /// </summary>
    public static string JobPreviews(string jobId) => $"{JobTag(jobId)}:previews";

    /// <summary>Hash: image index → the sequence number of its preview in <see cref="JobPreviews"/>, plus the job's counters.</summary>
    public static string JobPreviewSequence(string jobId) => $"{JobTag(jobId)}:preview-seq";

    /// <summary>
    /// Hash: "SHARD:INDEX" → an image's latents as its base stage left them (a base + refiner render, float32 [C, h, w]),
    /// until the refiner stage stored the image (the stage's shard carries a copy); the first report wins. Dropped when
    /// the job finishes (completed or failed: no stage waits for them), is cancelled, or is deleted.
    /// </summary>
    public static string JobLatents(string jobId) => $"{JobTag(jobId)}:latents";

    /// <summary>The field of <see cref="JobLatents"/> for one image of one shard.</summary>
    public static string LatentsField(uint shard, uint index) => $"{shard}:{index}";

    /// <summary>Pub/sub channel: a job's <see cref="JobPreviews"/> key, published when a preview is stored.</summary>
    public const string JobPreviewsChannel = "jobs:previews";

    /// <summary>Every key a job owns (for cleanup of a rejected submission, and deleting a job), its meta hash first.</summary>
    public static IEnumerable<string> AllJobKeys(string jobId) =>
    [
        JobMeta(jobId), JobImages(jobId), JobResults(jobId), JobFailures(jobId),
        JobShardsRemaining(jobId), JobEvents(jobId), JobStagedShards(jobId), JobParkedShards(jobId), JobInputs(jobId),
        JobTaskStreams(jobId), JobFailedAttempts(jobId), JobProgress(jobId), JobAcknowledged(jobId), JobPreviews(jobId),
        JobPreviewSequence(jobId), LegacyJobTaskEntries(jobId), JobLatents(jobId), JobResultChecks(jobId),
    ];
}
