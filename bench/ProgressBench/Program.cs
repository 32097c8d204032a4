// Progress-event capacity of the coordinator: K fake workers (real WorkerService protocol, one connection each) claim
// one shard each of a real job, then report steps as fast as the coordinator takes them (or at --rate per worker);
// W watchers follow the job through WatchJob. Over a measured window after a warm-up it reads the coordinator's and
// Redis's CPU time from /proc and counts the step events written to the job's event stream. See bench/farm-scale.md.
//
//   dotnet bench/ProgressBench/bin/Release/net10.0/ProgressBench.dll --coordinator http://127.0.0.1:PORT
//       --redis 127.0.0.1:PORT --coordinator-pid PID --redis-pid PID
//       [--workers 8] [--steps 50] [--watchers 1] [--rate 0] [--warmup 3] [--seconds 10] [--model bench] [--label run]
// --steps: steps per shard (reports cycle through 1..steps); --rate: step reports/s per worker, 0 = closed loop.
// The coordinator needs Farm:Auth:Mode=Disabled; its Farm:ProgressIntervalMilliseconds is what is being measured.
using System.Globalization;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging.Abstractions;
using RenderFarm.FarmState;
using RenderFarm.FarmState.TaskStreams;
using RenderFarm.ProgressBench;
using RenderFarm.Protocol;
using RenderFarm.Shared;
using StackExchange.Redis;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
BenchOptions options;
try
{
    options = BenchOptions.Parse(args);
}
catch (Exception e) when (e is ArgumentException or FormatException)
{
    Console.Error.WriteLine($"{e.Message}\nusage: see the top of bench/ProgressBench/Program.cs");
    return 2;
}

using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(options.WarmupSeconds + options.Seconds + 60));
var ct = deadline.Token;
using var redis = FarmRedis.Connect(options.Redis, "progress-bench");
var db = redis.GetDatabase();
var taskStream = FarmKeys.TaskStream(options.Model);
var queue = new ShardQueue(redis, NullLogger<ShardQueue>.Instance);
await queue.EnsureGroupAsync(taskStream);

// Workers register first, so the job's shards are sized to their batch (one shard per worker).
var workers = await Task.WhenAll(Enumerable.Range(1, options.Workers)
    .Select(i => FakeWorker.ConnectAsync(options.Coordinator, $"progress-{i}", options.Model, ct)));
var jobId = await SubmitAsync(options, images: options.Workers * 8, ct);
var claims = new List<(FakeWorker Worker, ShardRef Shard)>();
foreach (var worker in workers)
{
    var (shard, images) = await worker.ClaimAsync(queue, taskStream, ct);
    await worker.BeginAsync(shard, images, ct);
    claims.Add((worker, shard));
}
var watchers = Enumerable.Range(0, options.Watchers).Select(_ => new Watcher(options.Coordinator, jobId)).ToArray();

using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
var running = watchers.Select(w => w.RunAsync(stop.Token))
    .Concat(claims.Select(c => c.Worker.ReportStepsAsync(c.Shard, options.Steps, options.RatePerWorker, stop.Token)))
    .ToList();
await Task.Delay(TimeSpan.FromSeconds(options.WarmupSeconds), ct);
var start = await Snapshot.TakeAsync(options, db, jobId, workers, watchers);
await Task.Delay(TimeSpan.FromSeconds(options.Seconds), ct);
var end = await Snapshot.TakeAsync(options, db, jobId, workers, watchers);
stop.Cancel();
await Task.WhenAll(running);

var (stepEvents, cycles) = await CountStepEventsAsync(db, FarmKeys.JobEvents(jobId), start.LastEventId, end.LastEventId, options.Steps);
Console.WriteLine($"# {options.Label}: {options.Workers} workers, {options.Steps} steps per shard, {options.Watchers} watchers, " +
    $"{(options.RatePerWorker > 0 ? $"offered {options.RatePerWorker * options.Workers:F0} reports/s" : "closed loop")}, " +
    $"{end.Seconds - start.Seconds:F1} s window; {Environment.ProcessorCount} cores, load average {CpuClock.LoadAverage()}, job {jobId}");
Snapshot.Print(options, start, end, stepEvents, reports: cycles * options.Steps);
foreach (var worker in workers) await worker.DisposeAsync();
foreach (var watcher in watchers) watcher.Dispose();
return 0;

static async Task<string> SubmitAsync(BenchOptions options, int images, CancellationToken ct)
{
    using var channel = GrpcChannel.ForAddress(options.Coordinator);
    using var call = new JobService.JobServiceClient(channel).SubmitJob(cancellationToken: ct);
    var header = new JobHeader
    {
        Params = new GenerationParams { Model = options.Model, Width = 64, Height = 64, Steps = options.Steps, GuidanceScale = 7.5f },
        Label = "progress bench",
    };
    header.Seeds.Add(1);
    await call.RequestStream.WriteAsync(new SubmitJobRequest { Header = header }, ct);
    for (var i = 0; i < images; i++)
        await call.RequestStream.WriteAsync(new SubmitJobRequest { Prompt = new PromptItem { Prompt = $"progress bench {i}" } }, ct);
    await call.RequestStream.CompleteAsync();
    return (await call).JobId;
}

// Step events written in (after, until], and how many of them closed a shard's step cycle (step == total): the
// coordinator writes every last step, so cycles × steps counts the reports it handled, coalesced or not.
static async Task<(long StepEvents, long Cycles)> CountStepEventsAsync(IDatabase db, string key, string after, string until, uint total)
{
    long steps = 0, cycles = 0;
    for (var from = "(" + after; ;)
    {
        var page = await db.StreamRangeAsync(key, from, until, count: 10_000);
        if (page.Length == 0) return (steps, cycles);
        foreach (var entry in page)
        {
            if (entry["type"] != "step") continue;
            steps++;
            if ((long)entry["step"] == total) cycles++;
        }
        from = "(" + page[^1].Id;
    }
}
