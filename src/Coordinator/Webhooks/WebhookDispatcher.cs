using System.Globalization;
using System.Net.Http.Headers;
using Microsoft.Extensions.Options;
using Polly;
using Polly.Retry;
using RenderFarm.Coordinator.Jobs;
using RenderFarm.FarmState;
using RenderFarm.FarmState.Jobs;
using RenderFarm.FarmState.Webhooks;
using RenderFarm.Protocol;
using StackExchange.Redis;

namespace RenderFarm.Coordinator.Webhooks;

/// <summary>
/// Delivers job webhooks from the durable outbox (<see cref="FarmKeys.WebhookOutbox"/>), apart from everything that
/// moves jobs, so a slow or dead receiver never holds a job up, nor another job's delivery: each due job is taken under
/// a short lease (one replica delivers it at a time), up to <see cref="MaxInFlight"/> at once, each apart from the
/// others; a finished job's event is POSTed, signed with its tenant's secret. A failed delivery is
/// retried at once a couple of times (Polly), then rescheduled with a doubling backoff until
/// <see cref="WebhookOptions.GiveUpAfterSeconds"/>, then given up with the reason logged and kept on the job.
/// Delivered at least once: a coordinator that dies mid-delivery leaves the job in the outbox for the next.
/// A job is in the outbox from its submit (or retry) until its event is delivered or given up, but due only once it
/// ended: it is enlisted <see cref="WebhookOptions.RecheckSeconds"/> ahead, its end makes it due at once
/// (<see cref="JobEndedAsync"/>), and one found not ended when due is moved that far ahead again. So unfinished jobs
/// never fill the batch a poll reads ahead of ended ones, and an end whose coordinator stopped before making it due is
/// still found, after at most the recheck.
/// </summary>
public sealed class WebhookDispatcher(
    IConnectionMultiplexer redis,
    JobRepository jobs,
    WebhookSecrets secrets,
    WebhookTargets targets,
    IOptions<WebhookOptions> options,
    IOptions<CoordinatorOptions> coordinatorOptions,
    TimeProvider time,
    ILogger<WebhookDispatcher> logger) : BackgroundService
{
    public const string SignatureHeader = "X-RenderFarm-Signature";
    public const string EventIdHeader = "X-RenderFarm-Event-Id";

    private const int Batch = 100;

    /// <summary>Deliveries one coordinator has in flight at most (each its own receiver's, up to its timeout).</summary>
    public const int MaxInFlight = 64;

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, Task> _inFlight = new();

    private readonly HttpClient _http = new(new SocketsHttpHandler
    {
        ConnectCallback = targets.ConnectAsync,
        AllowAutoRedirect = false, // a redirect could point anywhere, past the target check
        UseProxy = false, // HTTP(S)_PROXY would make the connect-time target check judge the proxy, not the receiver
        PooledConnectionLifetime = TimeSpan.FromMinutes(2),
    })
    { Timeout = Timeout.InfiniteTimeSpan };

    private readonly ResiliencePipeline<HttpResponseMessage> _attempts = new ResiliencePipelineBuilder<HttpResponseMessage>()
        .AddRetry(new RetryStrategyOptions<HttpResponseMessage>
        {
            MaxRetryAttempts = 2,
            Delay = TimeSpan.FromMilliseconds(200),
            BackoffType = DelayBackoffType.Exponential,
            ShouldHandle = new PredicateBuilder<HttpResponseMessage>()
                .Handle<HttpRequestException>()
                .Handle<TaskCanceledException>()
                .HandleResult(r => (int)r.StatusCode >= 500 || r.StatusCode == System.Net.HttpStatusCode.TooManyRequests),
        })
        .Build();

    /// <summary>
    /// Adds a job to the outbox (at submit, or when a retry re-opens it), before it can end: its next end will be
    /// delivered. Looked at after <see cref="WebhookOptions.RecheckSeconds"/> unless its end makes it due sooner.
    /// </summary>
    public static Task EnlistAsync(IDatabase db, string jobId, WebhookOptions options) =>
        db.SortedSetAddAsync(FarmKeys.WebhookOutbox, jobId, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() + options.RecheckSeconds * 1000L);

    /// <summary>
    /// A job a retry re-opened: if it has a webhook, its state is pending again and it is enlisted, so its next end is
    /// told too; if that end came already (the job was cancelled before the retry's commit got here, and its end found
    /// no outbox entry to make due), it is due at once. Idempotent (at worst an end is told twice: delivery is at least once).
    /// </summary>
    public static async Task RearmAsync(IDatabase db, string jobId, WebhookOptions options)
    {
        if ((string?)await db.HashGetAsync(FarmKeys.JobMeta(jobId), JobFields.WebhookUrl) is not { Length: > 0 }) return;
        await Task.WhenAll(
            db.HashSetAsync(FarmKeys.JobMeta(jobId), JobFields.WebhookState, "pending"),
            // A fresh count of failed deliveries: the last end's (maybe given up) would give this one up at its first failure.
            db.HashDeleteAsync(FarmKeys.JobMeta(jobId), [JobFields.WebhookAttempts, JobFields.WebhookFirstAttemptMs]));
        await EnlistAsync(db, jobId, options);
        // Read after the entry is there: an end from now on makes it due itself, one before shows here.
        if ((string?)await db.HashGetAsync(FarmKeys.JobMeta(jobId), JobFields.State) is { } state && !JobStates.Unfinished.Contains(state))
            await JobEndedAsync(db, jobId);
    }

    /// <summary>
    /// A job ended: its event is due now, ahead of anything enlisted or rescheduled (a job without a webhook is not in
    /// the outbox and stays out). Called after the end is written; a coordinator that stops in between leaves the job to
    /// be found when its recheck comes. The score (minus the time) is below any enlisted one and differs between two ends
    /// of a job, so a delivery of the first end cannot take the entry of the second for its own (<see cref="ChangeEntryAsync"/>).
    /// </summary>
    public static Task JobEndedAsync(IDatabase db, string jobId) =>
        db.SortedSetAddAsync(FarmKeys.WebhookOutbox, jobId, -DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), SortedSetWhen.Exists);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(options.Value.PollMilliseconds), time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                try
                {
                    await StartDueAsync(stoppingToken);
                }
                catch (Exception e) when (e is RedisException or TimeoutException)
                {
                    logger.LogWarning("Webhook outbox not read: {Message}", e.Message);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping: an event being delivered stays in the outbox (leased) for the next coordinator.
        }
        await Task.WhenAll(_inFlight.Values);
    }

    /// <summary>
    /// Starts delivering what is due, up to <see cref="MaxInFlight"/> deliveries at once, without waiting for them: a
    /// receiver that takes its whole timeout (or never answers) holds one slot, not the next poll.
    /// </summary>
    private async Task StartDueAsync(CancellationToken cancellationToken)
    {
        var free = MaxInFlight - _inFlight.Count;
        if (free <= 0) return;
        var db = redis.GetDatabase();
        foreach (var (jobId, entry) in await ClaimDueAsync(db, free))
        {
            var delivery = DeliverLoggedAsync(db, jobId, entry, cancellationToken);
            _inFlight[jobId] = delivery;
            _ = delivery.ContinueWith(_ => _inFlight.TryRemove(new KeyValuePair<string, Task>(jobId, delivery)), TaskScheduler.Default);
        }
    }

    /// <summary>Delivers what is due now (up to a batch) and returns once each is delivered, rescheduled or given up.</summary>
    public async Task DispatchDueAsync(CancellationToken cancellationToken)
    {
        var db = redis.GetDatabase();
        await Task.WhenAll((await ClaimDueAsync(db, Batch)).Select(d => DispatchAsync(db, d.JobId, d.Entry, cancellationToken)));
    }

    /// <summary>
    /// Takes due jobs from the outbox under a lease (their entries re-scored to its end, so no other replica, nor this
    /// one's next poll, takes them meanwhile; a coordinator that dies mid-delivery leaves them due again after it). The
    /// lease's end is each entry's version: every change a delivery makes applies only if the entry is still that
    /// (<see cref="ChangeEntryAsync"/>), so a job's next end, or a retry that re-opened it, is never undone by it.
    /// </summary>
    private async Task<IEnumerable<(string JobId, double Entry)>> ClaimDueAsync(IDatabase db, int limit)
    {
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        // A plain read first: most polls find nothing due, and cost Redis no script.
        if ((await db.SortedSetRangeByScoreAsync(FarmKeys.WebhookOutbox, double.NegativeInfinity, now, take: 1)).Length == 0) return [];
        var until = now + (options.Value.TimeoutSeconds * 4 + 5) * 1000L; // past the three tries of one delivery
        var claimed = (RedisResult[])(await DueWorkScripts.ClaimDue.EvaluateAsync(db, [FarmKeys.WebhookOutbox], now, until, limit))!;
        return claimed.Select(job => ((string)job!, (double)until));
    }

    private async Task DeliverLoggedAsync(IDatabase db, string jobId, double entry, CancellationToken cancellationToken)
    {
        await Task.Yield(); // the poll goes on at once
        try
        {
            await DispatchAsync(db, jobId, entry, cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            // Left leased: due again when its lease ends.
            logger.LogWarning("Webhook of job {Job} not delivered, tried again later: {Message}", jobId, e.Message);
        }
    }

    private async Task DispatchAsync(IDatabase db, string jobId, double entry, CancellationToken cancellationToken)
    {
        var status = await jobs.GetStatusAsync(jobId);
        if (status is null)
        {
            await ChangeEntryAsync(db, jobId, entry, remove: true); // deleted meanwhile: nothing to tell
            return;
        }
        // Not ended yet: out of the due range until its end makes it due (which changes the entry, so this move does not
        // put it off), or its recheck comes.
        if (!Ended(status))
        {
            await ChangeEntryAsync(db, jobId, entry, dueMs: time.GetUtcNow().ToUnixTimeMilliseconds() + options.Value.RecheckSeconds * 1000L);
            return;
        }
        var meta = await db.HashGetAsync(FarmKeys.JobMeta(jobId),
            [JobFields.WebhookUrl, JobFields.Tenant, JobFields.WebhookAttempts, JobFields.WebhookFirstAttemptMs]);
        var (url, tenant) = ((string?)meta[0] ?? "", (string?)meta[1] ?? "");
        if (url.Length == 0)
        {
            await ChangeEntryAsync(db, jobId, entry, remove: true);
            return;
        }
        status.Cost = coordinatorOptions.Value.CostOf(status.DeviceSeconds);
        var failure = await PostAsync(url, status, await secrets.GetOrCreateAsync(tenant), cancellationToken);
        if (failure is null)
        {
            if (!await ChangeEntryAsync(db, jobId, entry, remove: true)) return; // re-opened meanwhile: its next end is still to tell
            await Task.WhenAll(
                db.HashSetAsync(FarmKeys.JobMeta(jobId), JobFields.WebhookState, "delivered"),
                db.HashDeleteAsync(FarmKeys.JobMeta(jobId), [JobFields.WebhookAttempts, JobFields.WebhookFirstAttemptMs]));
            return;
        }
        await FailedAsync(db, jobId, entry, url, (long?)meta[2] ?? 0, (long?)meta[3], failure);
    }

    private static bool Ended(JobStatus status) => status.State is JobState.Completed or JobState.Failed or JobState.Cancelled;

    /// <returns>Why the delivery failed, or null when the receiver took it (any 2xx).</returns>
    private async Task<string?> PostAsync(string url, JobStatus status, string secret, CancellationToken cancellationToken)
    {
        var body = WebhookEvent.Body(status, time.GetUtcNow());
        try
        {
            using var response = await _attempts.ExecuteAsync(async ct =>
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
                timeout.CancelAfter(TimeSpan.FromSeconds(options.Value.TimeoutSeconds));
                using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new ByteArrayContent(body) };
                request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
                request.Headers.Add(EventIdHeader, WebhookEvent.IdOf(status));
                request.Headers.Add("Idempotency-Key", WebhookEvent.IdOf(status));
                request.Headers.Add(SignatureHeader, WebhookSecrets.Sign(secret, body));
                return await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
            }, cancellationToken);
            return response.IsSuccessStatusCode ? null : $"HTTP {(int)response.StatusCode} {response.ReasonPhrase}";
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
            return e is TaskCanceledException ? $"no answer within {options.Value.TimeoutSeconds} s" : e.Message;
        }
    }

    /// <summary>Removes or reschedules a job's outbox entry if it is still at <paramref name="entry"/>; whether it was.</summary>
    private static async Task<bool> ChangeEntryAsync(IDatabase db, string jobId, double entry, bool remove = false, long dueMs = 0) =>
        (long)await WebhookScripts.ChangeIfUnchanged.EvaluateAsync(db, [FarmKeys.WebhookOutbox], jobId, entry, remove ? "" : dueMs) == 1;

    private async Task FailedAsync(IDatabase db, string jobId, double entry, string url, long attempts, long? firstMs, string reason)
    {
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        var first = firstMs ?? now;
        attempts++;
        if (now - first >= options.Value.GiveUpAfterSeconds * 1000L)
        {
            if (!await ChangeEntryAsync(db, jobId, entry, remove: true)) return;
            logger.LogWarning("Webhook of job {Job} to {Url} given up after {Attempts} failed deliveries over {Seconds} s: {Reason}",
                jobId, url, attempts, (now - first) / 1000, reason);
            await db.HashSetAsync(FarmKeys.JobMeta(jobId), JobFields.WebhookState, $"gave up: {reason}");
            return;
        }
        var backoff = Math.Min(options.Value.FirstBackoffMilliseconds * Math.Pow(2, attempts - 1), options.Value.MaxBackoffSeconds * 1000.0);
        if (!await ChangeEntryAsync(db, jobId, entry, dueMs: now + (long)backoff)) return;
        logger.LogInformation("Webhook of job {Job} to {Url} failed ({Reason}); attempt {Attempts}, next in {Seconds:0.#} s",
            jobId, url, reason, attempts, backoff / 1000);
        await db.HashSetAsync(FarmKeys.JobMeta(jobId),
        [
            new(JobFields.WebhookAttempts, attempts),
            new(JobFields.WebhookFirstAttemptMs, first),
            new(JobFields.WebhookState, string.Create(CultureInfo.InvariantCulture, $"pending (attempt {attempts} failed: {reason})")),
        ]);
    }

    public override void Dispose()
    {
        _http.Dispose();
        base.Dispose();
    }
}
