using System.Text.Json;
using Grpc.Core;
using RenderFarm.Coordinator.Webhooks;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.FarmState;
using RenderFarm.FarmState.Jobs;
using RenderFarm.Protocol;
using StackExchange.Redis;

namespace RenderFarm.Farm.Tests;

/// <summary>Job webhooks: signed, delivered at least once (across a coordinator kill -9), retried then given up, never to private targets.</summary>
public sealed class WebhookTests
{
    private static JobHeader Header(string webhook) => new()
    {
        Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7f },
        Seeds = { 3 },
        Label = "hooked",
        WebhookUrl = webhook,
    };

    private static readonly PromptItem[] TwoPrompts = [new() { Prompt = "a kite" }, new() { Prompt = "a boat" }];

    private static void Loopback(Dictionary<string, string?> s)
    {
        s["Farm:Webhooks:AllowPrivateTargets"] = "true"; // the receiver is on loopback
        s["Farm:Webhooks:PollMilliseconds"] = "100";
    }

    [Fact]
    public async Task AFinishedJobIsPostedOnceSignedWithItsTenantsSecret()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        await using var farm = await FarmCluster.StartAsync(workers: 1, configure: Loopback);
        var job = await farm.SubmitAsync(Header(receiver.Url), TwoPrompts);
        Assert.Equal("pending", (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = job.JobId })).Webhook);
        await farm.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(2));

        await Eventually.HoldsAsync(async () => (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = job.JobId })).Webhook == "delivered",
            "the webhook delivered");
        var delivery = Assert.Single(receiver.Deliveries);
        var tenant = (string)farm.Redis.HashGet(FarmKeys.JobMeta(job.JobId), JobFields.Tenant)!;
        var secret = (string)farm.Redis.HashGet(FarmKeys.WebhookSecrets, tenant)!;
        Assert.StartsWith("whsec_", secret);
        Assert.Equal(WebhookSecrets.Sign(secret, delivery.Body), delivery.Signature);
        Assert.NotEqual(WebhookSecrets.Sign(secret + "x", delivery.Body), delivery.Signature);

        using var body = JsonDocument.Parse(delivery.Body);
        var root = body.RootElement;
        Assert.Equal(delivery.EventId, root.GetProperty("id").GetString());
        Assert.Equal(delivery.EventId, delivery.IdempotencyKey);
        Assert.StartsWith(job.JobId + ":", delivery.EventId);
        Assert.Equal("job.finished", root.GetProperty("type").GetString());
        Assert.Equal(job.JobId, root.GetProperty("job_id").GetString());
        Assert.Equal("completed", root.GetProperty("state").GetString());
        Assert.Equal(2, root.GetProperty("images_done").GetInt32());
        Assert.Equal("hooked", root.GetProperty("label").GetString());
        Assert.True(root.GetProperty("device_seconds").GetDouble() > 0);
        Assert.Equal(0, farm.Redis.SortedSetLength(FarmKeys.WebhookOutbox));
    }

    [Fact]
    public async Task AFailingReceiverIsRetriedWithBackoffThenGivenUpWithTheReasonLoggedAndKept()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        receiver.Status = 500;
        using var log = new CapturedLog();
        await using var farm = await FarmCluster.StartAsync(workers: 1, configure: s =>
        {
            Loopback(s);
            s["Farm:Webhooks:FirstBackoffMilliseconds"] = "100";
            s["Farm:Webhooks:GiveUpAfterSeconds"] = "1";
        }, coordinatorServices: services => services.AddSingleton<ILoggerProvider>(log));
        var job = await farm.SubmitAsync(Header(receiver.Url), TwoPrompts);
        await farm.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(2));

        await Eventually.HoldsAsync(async () =>
            (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = job.JobId })).Webhook.StartsWith("gave up", StringComparison.Ordinal), "the webhook given up");
        var status = await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = job.JobId });
        Assert.Equal("gave up: HTTP 500 Internal Server Error", status.Webhook);
        // The operator's side: the dispatcher logged it (before keeping it on the job), naming the job, target and reason.
        var gaveUp = Assert.Single(log.AtLeast(LogLevel.Warning), e => e.Contains(job.JobId, StringComparison.Ordinal));
        Assert.StartsWith($"Warning {typeof(WebhookDispatcher).FullName}: Webhook of job {job.JobId} to {receiver.Url} given up after ", gaveUp);
        Assert.EndsWith(": HTTP 500 Internal Server Error", gaveUp);
        // Each dispatch tries three times (Polly), and it was dispatched again after a backoff before giving up.
        Assert.True(receiver.Deliveries.Count >= 6, $"{receiver.Deliveries.Count} deliveries");
        Assert.Single(receiver.Deliveries.Select(d => d.EventId).Distinct());
        Assert.Equal(0, farm.Redis.SortedSetLength(FarmKeys.WebhookOutbox));
    }

    [Fact]
    public async Task FarmSubmitWebhookIsToldOfACancelledJobAndOfAFailedOne()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        await using var farm = await FarmCluster.StartAsync(workers: 0, configure: s =>
        {
            Loopback(s);
            s["Farm:MaxAttempts"] = "1"; // one failed attempt fails the image
        });
        // farm submit --webhook, with no worker yet: the job waits until it is cancelled.
        var prompts = Path.Combine(farm.Root, "prompts.txt");
        await File.WriteAllLinesAsync(prompts, ["a cancelled kite"]);
        var (stdout, stderr) = (new StringWriter(), new StringWriter());
        var exit = await RenderFarm.Client.FarmCli.RunAsync(["--coordinator", farm.CoordinatorUrl, "submit", prompts, "--size", "64x64",
            "--steps", "2", "--seed", "1", "--webhook", receiver.Url], stdout, stderr, CancellationToken.None);
        Assert.True(exit == 0, stderr.ToString());
        var cancelled = stdout.ToString().Trim().Split('\n')[^1].Trim();
        Assert.Equal("pending", (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = cancelled })).Webhook); // the flag reached the job
        await farm.Jobs.CancelJobAsync(new CancelJobRequest { JobId = cancelled });

        // Its only worker cannot render the model: the next job fails.
        await farm.StartWorkerAsync("broken", s =>
        {
            s[$"Farm:Models:{FarmCluster.Model}"] = TestModels.WriteBroken(farm.Root);
            s["Farm:WarmUp"] = "false";
        });
        var failed = (await farm.SubmitAsync(Header(receiver.Url), TwoPrompts)).JobId;

        await Eventually.HoldsAsync(() => Task.FromResult(receiver.Deliveries.Select(d => d.EventId).Distinct().Count() == 2),
            "both jobs' events");
        var states = receiver.Deliveries.Select(d => JsonDocument.Parse(d.Body).RootElement)
            .ToDictionary(e => e.GetProperty("job_id").GetString()!, e => e.GetProperty("state").GetString());
        Assert.Equal("cancelled", states[cancelled]);
        Assert.Equal("failed", states[failed]);
    }

    /// <summary>A farm whose only worker cannot render the model, and one failed attempt fails an image: every job fails.</summary>
    private static async Task<FarmCluster> FailingFarmAsync(Action<Dictionary<string, string?>>? configure = null)
    {
        var farm = await FarmCluster.StartAsync(workers: 0, configure: s =>
        {
            Loopback(s);
            s["Farm:MaxAttempts"] = "1";
            configure?.Invoke(s);
        });
        await farm.StartWorkerAsync("broken", s =>
        {
            s[$"Farm:Models:{FarmCluster.Model}"] = TestModels.WriteBroken(farm.Root);
            s["Farm:WarmUp"] = "false";
        });
        return farm;
    }

    [Fact]
    public async Task ARetryWhileTheLastEndIsBeingDeliveredHasItsOwnEndToldToo()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        var firstHeld = new TaskCompletionSource();
        var releaseFirst = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        receiver.Respond = delivery =>
        {
            if (receiver.Deliveries.First().EventId != delivery.EventId) return Task.FromResult(200);
            firstHeld.TrySetResult();
            return releaseFirst.Task;
        };
        await using var farm = await FailingFarmAsync(s => s["Farm:Webhooks:RecheckSeconds"] = "3600");
        var job = await farm.SubmitAsync(Header(receiver.Url), TwoPrompts);
        await firstHeld.Task.WaitAsync(TimeSpan.FromMinutes(2)); // the failed end is being POSTed

        await farm.Jobs.RetryJobAsync(new RetryJobRequest { JobId = job.JobId });
        releaseFirst.SetResult(200); // ... and taken, after the retry enlisted the job's next end

        await Eventually.HoldsAsync(() => Task.FromResult(receiver.Deliveries.Select(d => d.EventId).Distinct().Count() == 2),
            "the retried job's end told as well");
        await Eventually.HoldsAsync(async () => (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = job.JobId })).Webhook == "delivered",
            "the webhook delivered");
        Assert.Equal(0, farm.Redis.SortedSetLength(FarmKeys.WebhookOutbox));
    }

    [Fact]
    public async Task ARetriedJobsEndIsNotGivenUpForItsLastEndsFailedDeliveries()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        var firstEnd = "";
        var secondEndTries = 0;
        receiver.Respond = delivery =>
        {
            if (firstEnd.Length == 0) firstEnd = delivery.EventId;
            if (delivery.EventId == firstEnd) return Task.FromResult(500); // given up after GiveUpAfterSeconds
            return Task.FromResult(Interlocked.Increment(ref secondEndTries) <= 3 ? 500 : 200); // one failed dispatch, then taken
        };
        await using var farm = await FailingFarmAsync(s =>
        {
            s["Farm:Webhooks:FirstBackoffMilliseconds"] = "100";
            s["Farm:Webhooks:GiveUpAfterSeconds"] = "2";
        });
        var job = await farm.SubmitAsync(Header(receiver.Url), TwoPrompts);
        await Eventually.HoldsAsync(async () =>
            (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = job.JobId })).Webhook.StartsWith("gave up", StringComparison.Ordinal),
            "the first end given up");

        await farm.Jobs.RetryJobAsync(new RetryJobRequest { JobId = job.JobId });

        await Eventually.HoldsAsync(async () => (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = job.JobId })).Webhook is var state
                && (state == "delivered" || state.StartsWith("gave up", StringComparison.Ordinal)),
            "the second end delivered or given up");
        Assert.Equal("delivered", (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = job.JobId })).Webhook);
        Assert.Equal(4, secondEndTries);
    }

    [Fact]
    public async Task AReceiverThatNeverAnswersHoldsUpNoOtherJobsDelivery()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        var stuckEvent = "";
        var stuck = new TaskCompletionSource();
        var never = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        receiver.Respond = delivery =>
        {
            if (Interlocked.CompareExchange(ref stuckEvent, delivery.EventId, "") is "" || delivery.EventId == stuckEvent)
            {
                stuck.TrySetResult();
                return never.Task; // answers when the test ends: far past the next job's end
            }
            return Task.FromResult(200);
        };
        await using var answerAtTheEnd = new AnswerAtTheEnd(never); // disposed after the farm: its delivery ends with it
        await using var farm = await FarmCluster.StartAsync(workers: 0, configure: s =>
        {
            Loopback(s);
            s["Farm:Webhooks:TimeoutSeconds"] = "300";
        });
        var slow = (await farm.SubmitAsync(Header(receiver.Url), TwoPrompts)).JobId;
        var fast = (await farm.SubmitAsync(Header(receiver.Url), TwoPrompts)).JobId;
        await farm.Jobs.CancelJobAsync(new CancelJobRequest { JobId = slow });
        await stuck.Task.WaitAsync(TimeSpan.FromMinutes(1)); // the first end's receiver has it, and does not answer

        await farm.Jobs.CancelJobAsync(new CancelJobRequest { JobId = fast });

        // Before, a poll waited for all it had read: the next end waited for the stuck one's timeout, 3 × 300 s.
        await Eventually.HoldsAsync(async () => (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = fast })).Webhook == "delivered",
            "the second job's event delivered while the first's receiver holds its own");
        Assert.Equal("pending", (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = slow })).Webhook);
    }

    private sealed class AnswerAtTheEnd(TaskCompletionSource<int> answer) : IAsyncDisposable
    {
        public ValueTask DisposeAsync()
        {
            answer.TrySetResult(200);
            return ValueTask.CompletedTask;
        }
    }

    [Fact]
    public async Task UnfinishedWebhookJobsDoNotHoldUpAnEndedOneThatSortsAfterThem()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        await using var farm = await FarmCluster.StartAsync(workers: 0, configure: s =>
        {
            Loopback(s);
            s["Farm:Webhooks:PollMilliseconds"] = "60000"; // the test dispatches, call by call
            s["Farm:Limits:MaxActiveJobsPerTenant"] = "200";
        });
        var dispatcher = farm.CoordinatorServices.GetServices<IHostedService>().OfType<WebhookDispatcher>().Single();
        // More unfinished webhook jobs than one dispatch reads (100), and one that ends: the one whose id sorts last.
        var submitted = new List<string>();
        for (var i = 0; i < 102; i++) submitted.Add((await farm.SubmitAsync(Header(receiver.Url), [new PromptItem { Prompt = $"waiting {i}" }])).JobId);
        var ended = submitted.Max(StringComparer.Ordinal)!;
        var unfinished = submitted.Where(id => id != ended).ToList();
        // Every one of them due, as when their recheck comes (or as a coordinator enlisted them before rechecks existed).
        await farm.Redis.SortedSetAddAsync(FarmKeys.WebhookOutbox, [.. unfinished.Append(ended).Select(id => new SortedSetEntry(id, 0))]);
        await farm.Jobs.CancelJobAsync(new CancelJobRequest { JobId = ended });

        await dispatcher.DispatchDueAsync(CancellationToken.None);
        Assert.Single(receiver.Deliveries); // told at the first dispatch: an end's entry sorts before every recheck's
        for (var call = 0; call < 2; call++) await dispatcher.DispatchDueAsync(CancellationToken.None);

        var delivery = Assert.Single(receiver.Deliveries);
        Assert.Equal(ended, JsonDocument.Parse(delivery.Body).RootElement.GetProperty("job_id").GetString());
        Assert.Equal("delivered", (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = ended })).Webhook);
        // The unfinished jobs stay in the outbox (their ends are still to be told), but not due.
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        Assert.Equal(101, farm.Redis.SortedSetLength(FarmKeys.WebhookOutbox));
        Assert.Equal(0, farm.Redis.SortedSetLength(FarmKeys.WebhookOutbox, double.NegativeInfinity, now));
    }

    [Fact]
    public async Task AJobEndedByACoordinatorThatStoppedBeforeMakingItsWebhookDueIsToldAfterTheRecheck()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        await using var farm = await FarmCluster.StartAsync(workers: 0, configure: s =>
        {
            Loopback(s);
            s["Farm:Webhooks:RecheckSeconds"] = "1";
        });
        var job = (await farm.SubmitAsync(Header(receiver.Url), TwoPrompts)).JobId;
        // The cancel's script alone: the coordinator that ran it stopped before making the webhook due.
        Assert.Equal(1, (int)await JobScripts.Cancel.EvaluateAsync(farm.Redis,
            [FarmKeys.JobMeta(job), FarmKeys.JobEvents(job), FarmKeys.JobParkedShards(job), FarmKeys.JobInputs(job), FarmKeys.JobProgress(job),
             FarmKeys.JobLatents(job)],
            DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()));

        await Eventually.HoldsAsync(async () => (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = job })).Webhook == "delivered",
            "the webhook delivered after the recheck");
        Assert.Equal("cancelled", JsonDocument.Parse(Assert.Single(receiver.Deliveries).Body).RootElement.GetProperty("state").GetString());
    }

    [Theory]
    [InlineData("http://10.1.2.3/hook", "private")]
    [InlineData("http://192.168.0.10:8080/hook", "private")]
    [InlineData("http://127.0.0.1:9/hook", "loopback")]
    [InlineData("http://[::1]/hook", "loopback")]
    [InlineData("http://169.254.169.254/latest/meta-data", "link-local")]
    [InlineData("ftp://example.com/hook", "not an absolute http")]
    public async Task APrivateOrNonHttpTargetIsRefusedAtSubmit(string url, string reason)
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0);
        var error = await Assert.ThrowsAsync<RpcException>(() => farm.SubmitAsync(Header(url), TwoPrompts));
        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
        Assert.Contains("webhook_url", error.Status.Detail);
        Assert.Contains(reason, error.Status.Detail);
    }

    [Fact]
    public async Task AnEventNotYetDeliveredWhenTheCoordinatorIsKilledIsDeliveredByTheNextOne()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        receiver.Status = 503; // down while the job ends: the event waits in the outbox
        Dictionary<string, string> settings = new()
        {
            ["Farm__Webhooks__AllowPrivateTargets"] = "true",
            ["Farm__Webhooks__PollMilliseconds"] = "100",
            ["Farm__Webhooks__FirstBackoffMilliseconds"] = "100",
            ["Farm__Webhooks__MaxBackoffSeconds"] = "1",
        };
        await using var farm = await ProcessFarm.StartAsync(workers: 1, coordinatorOverrides: settings);
        var job = await farm.SubmitAsync(Header(receiver.Url), TwoPrompts);
        Assert.Equal(JobState.Completed, (await farm.WaitFinishedAsync(job.JobId, TimeSpan.FromMinutes(2))).State);
        await Eventually.HoldsAsync(() => Task.FromResult(!receiver.Deliveries.IsEmpty), "a first (failed) delivery");

        await farm.RestartCoordinatorAsync(); // kill -9, then a new coordinator process
        receiver.Status = 200;

        await Eventually.HoldsAsync(async () => (await farm.Jobs.GetJobAsync(new GetJobRequest { JobId = job.JobId })).Webhook == "delivered",
            "the webhook delivered after the restart");
        // At least once: the receiver saw the one event (maybe more than once), and dedupes by its id.
        var ids = receiver.Deliveries.Select(d => d.EventId).Distinct().ToList();
        Assert.Single(ids);
        Assert.StartsWith(job.JobId + ":", ids[0]);
    }
}
