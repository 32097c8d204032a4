using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using RenderFarm.Protocol;

namespace RenderFarm.Client;

/// <summary>
/// The farm's read and control commands besides status: <c>jobs</c>, <c>cancel</c>, <c>workers</c>, <c>models</c>.
/// Every read command takes <c>--json</c> (one JSON array, snake_case fields) for scripts.
/// </summary>
public static class ListCommands
{
    private static readonly JsonWriterOptions JsonOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static Command Jobs(FarmCliHost host, GlobalOptions globals)
    {
        var states = new Option<string[]>("--state")
        {
            Description = "Only jobs in these states (queued, running, completed, failed, cancelled); repeat or comma-separate.",
            AllowMultipleArgumentsPerToken = true,
        };
        var limit = new Option<int>("--limit") { Description = "At most this many jobs, newest first.", DefaultValueFactory = _ => 50 };
        var json = JsonOption("Print a JSON array of job objects (the `farm status --json` shape).");
        var command = new Command("jobs", "List jobs, newest first.\n\nExamples:\n  farm jobs\n  farm jobs --state running,queued\n  farm jobs --json | jq -r '.[].job_id'")
        {
            states, limit, json,
        };
        command.SetAction((parseResult, ct) => CommandContext.RunAsync(host, globals, parseResult, ct, async context =>
        {
            var request = new ListJobsRequest { Limit = (uint)Math.Clamp(parseResult.GetValue(limit), 1, 1000) };
            foreach (var state in (parseResult.GetValue(states) ?? []).SelectMany(s => s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)))
                request.States.Add(ParseState(state));
            var response = await context.Coordinator.Client.ListJobsAsync(request, context.Coordinator.CallOptions(ct));
            if (parseResult.GetValue(json))
                context.Out.WriteLine("[" + string.Join(",", response.Jobs.Select(StatusCommand.FormatJson)) + "]");
            else
                context.Out.Write(TextTable.Format(["JOB", "STATE", "DONE", "FAILED", "TOTAL", "MODEL", "SIZE", "CREATED", "LABEL"],
                    response.Jobs.Select(j => (IReadOnlyList<string>)
                    [
                        j.JobId, PlainWatchObserver.StateName(j.State), N(j.ImagesDone), N(j.ImagesFailed), N(j.ImageCount),
                        j.Params?.Model ?? "", $"{j.Params?.Width}x{j.Params?.Height}", Time(j.CreatedUnixMs), CliErrors.OneLine(j.Label),
                    ])));
            return ExitCodes.Ok;
        }));
        return command;
    }

    public static Command Cancel(FarmCliHost host, GlobalOptions globals) => JobControl(host, globals, "cancel",
        "Cancel a job: queued shards are skipped, running ones stop at their next step, nothing more is stored. " +
        "Cancelling a finished job changes nothing.\n\nExample:\n  farm cancel \"$id\"",
        (client, id, options) => client.CancelJobAsync(new CancelJobRequest { JobId = id }, options).ResponseAsync);

    public static Command Pause(FarmCliHost host, GlobalOptions globals) => JobControl(host, globals, "pause",
        "Pause a job: running shards finish, no new shard starts until `farm resume`.\n\nExample:\n  farm pause \"$id\"",
        (client, id, options) => client.PauseJobAsync(new PauseJobRequest { JobId = id }, options).ResponseAsync);

    public static Command Resume(FarmCliHost host, GlobalOptions globals) => JobControl(host, globals, "resume",
        "Resume a paused job.\n\nExample:\n  farm resume \"$id\"",
        (client, id, options) => client.ResumeJobAsync(new ResumeJobRequest { JobId = id }, options).ResponseAsync);

    public static Command Retry(FarmCliHost host, GlobalOptions globals) => JobControl(host, globals, "retry",
        "Re-queue the failed images of a finished job (the others are kept).\n\nExample:\n  farm retry \"$id\" && farm watch \"$id\"",
        (client, id, options) => client.RetryJobAsync(new RetryJobRequest { JobId = id }, options).ResponseAsync);

    /// <summary>A command that changes one job and prints its status afterwards (table, or JSON with --json).</summary>
    private static Command JobControl(FarmCliHost host, GlobalOptions globals, string name, string description,
        Func<JobService.JobServiceClient, string, Grpc.Core.CallOptions, Task<JobStatus>> call)
    {
        var job = new Argument<string>("JOB") { Description = "Job id." };
        var json = JsonOption("Print the job's status afterwards as JSON (the `farm status --json` shape).");
        var command = new Command(name, description) { job, json };
        command.SetAction((parseResult, ct) => CommandContext.RunAsync(host, globals, parseResult, ct, async context =>
        {
            var jobId = WatchCommand.RequireJobId(parseResult.GetRequiredValue(job));
            var status = await call(context.Coordinator.Client, jobId, context.Coordinator.CallOptions(ct));
            context.Out.Write(parseResult.GetValue(json) ? StatusCommand.FormatJson(status) + "\n" : StatusCommand.FormatTable(status));
            return ExitCodes.Ok;
        }));
        return command;
    }

    public static Command Workers(FarmCliHost host, GlobalOptions globals)
    {
        var json = JsonOption("Print a JSON array (worker_id, state, loading, models, max_batch, execution_provider, device, current_job_id, " +
                              "current_shard, images_done, shards_failed, it_per_sec, memory_bytes, last_seen).");
        var command = new Command("workers", "List the farm's workers: state (loading, idle, busy, offline, quarantined), current shard, images done, it/s.\n" +
                                             "A worker still loading or warming up its models says what it is doing (a TensorRT engine build takes minutes) and takes no shards yet.\n\n" +
                                             "Examples:\n  farm workers\n  farm workers release gpu-node-3   # after fixing a quarantined worker")
        {
            json,
            ReleaseWorker(host, globals),
        };
        command.SetAction((parseResult, ct) => CommandContext.RunAsync(host, globals, parseResult, ct, async context =>
        {
            var response = await context.Coordinator.Client.ListWorkersAsync(new ListWorkersRequest(), context.Coordinator.CallOptions(ct));
            if (parseResult.GetValue(json))
            {
                context.Out.WriteLine(JsonArray(response.Workers, (w, j) =>
                {
                    j.WriteString("worker_id", w.WorkerId);
                    j.WriteString("state", StateName(w.State));
                    j.WriteString("loading", w.Loading);
                    j.WriteStartArray("models");
                    foreach (var m in w.Models) j.WriteStringValue(m);
                    j.WriteEndArray();
                    j.WriteNumber("max_batch", w.MaxBatch);
                    j.WriteString("execution_provider", w.ExecutionProvider);
                    j.WriteString("device", w.Device);
                    j.WriteString("current_job_id", w.CurrentJobId);
                    j.WriteNumber("current_shard", w.CurrentShard);
                    j.WriteNumber("images_done", w.ImagesDone);
                    j.WriteNumber("shards_failed", w.ShardsFailed);
                    j.WriteNumber("it_per_sec", Math.Round((double)w.ItPerSec, 2));
                    j.WriteNumber("memory_bytes", w.MemoryBytes);
                    j.WriteString("last_seen", Time(w.LastSeenUnixMs));
                }));
            }
            else
            {
                context.Out.Write(TextTable.Format(["WORKER", "STATE", "MODELS", "DEVICE", "JOB/SHARD", "IMAGES", "FAILED", "IT/S", "LAST SEEN"],
                    response.Workers.Select(w => (IReadOnlyList<string>)
                    [
                        w.WorkerId, State(w), string.Join(",", w.Models), Device(w),
                        w.CurrentJobId.Length == 0 ? "-" : $"{w.CurrentJobId}/{w.CurrentShard}", N(w.ImagesDone), N(w.ShardsFailed),
                        w.ItPerSec.ToString("0.0", CultureInfo.InvariantCulture), Time(w.LastSeenUnixMs),
                    ])));
            }
            return ExitCodes.Ok;
        }));
        return command;
    }

    /// <summary>The state; for a loading worker, what it is doing ("loading sd15 (building TensorRT engine)").</summary>
    private static string State(WorkerInfo w) => w.State == WorkerState.Loading && w.Loading.Length > 0 ? w.Loading : StateName(w.State);

    /// <summary>Provider, device and memory, e.g. "cuda NVIDIA H100 80GB HBM3 79.6 GiB".</summary>
    private static string Device(WorkerInfo w) =>
        string.Create(CultureInfo.InvariantCulture, $"{w.ExecutionProvider} {w.Device}{(w.MemoryBytes > 0 ? $" {w.MemoryBytes / (double)(1L << 30):0.#} GiB" : "")}").Trim();

    /// <summary><c>farm workers release WORKER</c>: lifts a quarantine, which otherwise outlasts the worker's restarts.</summary>
    private static Command ReleaseWorker(FarmCliHost host, GlobalOptions globals)
    {
        var worker = new Argument<string>("WORKER") { Description = "Worker id, as `farm workers` lists it." };
        var command = new Command("release",
            "Lift a worker's quarantine: its failure count starts afresh and it takes shards again (at once if it is running). " +
            "A quarantine survives restarts of the worker, so fix it first. Needs an admin key (`keys create --role admin`).\n\n" +
            "Example:\n  farm workers release gpu-node-3")
        {
            worker,
        };
        command.SetAction((parseResult, ct) => CommandContext.RunAsync(host, globals, parseResult, ct, async context =>
        {
            var info = await context.Coordinator.Client.ReleaseWorkerAsync(
                new ReleaseWorkerRequest { WorkerId = parseResult.GetRequiredValue(worker) }, context.Coordinator.CallOptions(ct));
            context.Out.WriteLine($"{info.WorkerId}: {StateName(info.State)}");
            return ExitCodes.Ok;
        }));
        return command;
    }

    public static Command Models(FarmCliHost host, GlobalOptions globals)
    {
        var json = JsonOption("Print a JSON array (name, workers, shards_waiting).");
        var command = new Command("models", "List the models the farm can render now: workers serving each and shards waiting for them.\n\nExample:\n  farm models")
        {
            json,
        };
        command.SetAction((parseResult, ct) => CommandContext.RunAsync(host, globals, parseResult, ct, async context =>
        {
            var response = await context.Coordinator.Client.ListModelsAsync(new ListModelsRequest(), context.Coordinator.CallOptions(ct));
            if (parseResult.GetValue(json))
                context.Out.WriteLine(JsonArray(response.Models, (m, j) =>
                {
                    j.WriteString("name", m.Name);
                    j.WriteNumber("workers", m.Workers);
                    j.WriteNumber("shards_waiting", m.ShardsWaiting);
                }));
            else
                context.Out.Write(TextTable.Format(["MODEL", "WORKERS", "SHARDS WAITING"],
                    response.Models.Select(m => (IReadOnlyList<string>)[m.Name, N(m.Workers), N(m.ShardsWaiting)])));
            return ExitCodes.Ok;
        }));
        return command;
    }

    public static JobState ParseState(string text) => text.ToLowerInvariant() switch
    {
        "queued" => JobState.Queued,
        "running" => JobState.Running,
        "completed" => JobState.Completed,
        "failed" => JobState.Failed,
        "cancelled" or "canceled" => JobState.Cancelled,
        "paused" => JobState.Paused,
        _ => throw new CliUsageException($"--state: unknown state '{text}' (queued, running, paused, completed, failed, cancelled)"),
    };

    public static string StateName(WorkerState state) => state switch
    {
        WorkerState.Idle => "idle",
        WorkerState.Busy => "busy",
        WorkerState.Offline => "offline",
        WorkerState.Quarantined => "quarantined",
        WorkerState.Loading => "loading",
        _ => "unknown",
    };

    private static Option<bool> JsonOption(string description) => new("--json") { Description = description };

    private static string JsonArray<T>(IEnumerable<T> items, Action<T, Utf8JsonWriter> writeFields)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, JsonOptions))
        {
            json.WriteStartArray();
            foreach (var item in items)
            {
                json.WriteStartObject();
                writeFields(item, json);
                json.WriteEndObject();
            }
            json.WriteEndArray();
        }
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    private static string N(ulong value) => value.ToString(CultureInfo.InvariantCulture);

    private static string Time(long unixMs) => unixMs <= 0
        ? "-"
        : DateTimeOffset.FromUnixTimeMilliseconds(unixMs).UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
}
