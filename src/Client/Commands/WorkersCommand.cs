using System.CommandLine;
using System.Globalization;
using RenderFarm.Client.Cli;
using RenderFarm.Client.Output;
using RenderFarm.Protocol;
using RenderFarm.Shared;

namespace RenderFarm.Client.Commands;

/// <summary><c>farm workers</c>: the farm's workers as a table or a JSON array; <c>workers release</c> is its subcommand.</summary>
public static class WorkersCommand
{
    public static Command Create(FarmCliHost host, GlobalOptions globals)
    {
        var json = JsonFlag.Create("Print a JSON array (worker_id, state, loading, models, held, model_memory_budget, loras, max_batch, execution_provider, " +
                              "device, current_job_id, current_shard, images_done, shards_failed, it_per_sec, memory_bytes, memory_used_bytes, last_seen).");
        var command = new Command("workers", "List the farm's workers: state (loading, idle, busy, offline, quarantined), the models and LoRA variants each holds loaded, current shard, images done, it/s.\n" +
                                             "A worker still loading or warming up its models says what it is doing (a TensorRT engine build takes minutes) and takes no shards yet;\n" +
                                             "a busy worker loading the model or LoRA variant its shard needs says so too (busy: loading sd15 + LoRA style:0.8).\n\n" +
                                             "Examples:\n  farm workers\n  farm workers release gpu-node-3   # after fixing a quarantined worker")
        {
            json,
            WorkersReleaseCommand.Create(host, globals),
        };
        command.SetAction((parseResult, ct) => CommandContext.RunAsync(host, globals, parseResult, ct, async context =>
        {
            var response = await context.Coordinator.Client.ListWorkersAsync(new ListWorkersRequest(), context.Coordinator.CallOptions(ct));
            if (parseResult.GetValue(json))
            {
                context.Out.WriteLine(JsonText.Array(response.Workers, (w, j) =>
                {
                    j.WriteString("worker_id", w.WorkerId);
                    j.WriteString("state", StateNames.Of(w.State));
                    j.WriteString("loading", w.Loading);
                    j.WriteStartArray("models");
                    foreach (var m in w.Models) j.WriteStringValue(m);
                    j.WriteEndArray();
                    j.WriteStartArray("held");
                    foreach (var h in w.Held)
                    {
                        j.WriteStartObject();
                        j.WriteString("model", h.Model);
                        j.WriteString("loras", LoraMessages.Describe(h.Loras));
                        j.WriteNumber("bytes", h.Bytes);
                        j.WriteEndObject();
                    }
                    j.WriteEndArray();
                    j.WriteNumber("model_memory_budget", w.ModelMemoryBudget);
                    j.WriteStartArray("loras");
                    foreach (var l in w.Loras) j.WriteStringValue(l.Name);
                    j.WriteEndArray();
                    j.WriteStartArray("controlnets");
                    foreach (var c in w.ControlNets) j.WriteStringValue(c.Name);
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
                    j.WriteNumber("memory_used_bytes", w.MemoryUsedBytes);
                    j.WriteString("last_seen", TextTable.Time(w.LastSeenUnixMs));
                }));
            }
            else
            {
                context.Out.Write(TextTable.Format(["WORKER", "STATE", "MODELS", "HELD", "DEVICE", "JOB/SHARD", "IMAGES", "FAILED", "IT/S", "LAST SEEN"],
                    response.Workers.Select(w => (IReadOnlyList<string>)
                    [
                        w.WorkerId, State(w), string.Join(",", w.Models), Held(w), Device(w),
                        w.CurrentJobId.Length == 0 ? "-" : $"{w.CurrentJobId}/{w.CurrentShard}", TextTable.Number(w.ImagesDone), TextTable.Number(w.ShardsFailed),
                        w.ItPerSec.ToString("0.0", CultureInfo.InvariantCulture), TextTable.Time(w.LastSeenUnixMs),
                    ])));
            }
            return ExitCodes.Ok;
        }));
        return command;
    }

    /// <summary>
    /// The state; for a loading worker, what it is doing ("loading sd15 (building TensorRT engine)"); for a busy one
    /// loading what its shard needs, that too ("busy: loading sd15 + LoRA style:0.8").
    /// </summary>
    private static string State(WorkerInfo w) => w.Loading.Length == 0 ? StateNames.Of(w.State)
        : w.State == WorkerState.Loading ? w.Loading
        : $"{StateNames.Of(w.State)}: {w.Loading}";

    /// <summary>What it holds loaded, most recent first, and the memory that takes against its budget ("sd15, sd15 + style:0.8 (5.1 GiB of 20.0 GiB)").</summary>
    private static string Held(WorkerInfo w)
    {
        if (w.Held.Count == 0) return "-";
        var items = string.Join(", ", w.Held.Select(h => h.Loras.Count == 0 ? h.Model : $"{h.Model} + {LoraMessages.Describe(h.Loras)}"));
        var bytes = (long)w.Held.Aggregate(0UL, (sum, h) => sum + h.Bytes);
        return $"{items} ({ByteSize.Short(bytes)}{(w.ModelMemoryBudget > 0 ? $" of {ByteSize.Short((long)w.ModelMemoryBudget)}" : "")})";
    }

    /// <summary>
    /// Provider, device and memory: in use (as the worker last measured it) of the total once it has loaded a model, e.g.
    /// "cuda NVIDIA H100 80GB HBM3 9.9/79.6 GiB", the total alone before.
    /// </summary>
    private static string Device(WorkerInfo w)
    {
        static string GiB(ulong bytes) => (bytes / (double)(1L << 30)).ToString("0.#", CultureInfo.InvariantCulture);
        var memory = w.MemoryBytes == 0 ? ""
            : w.MemoryUsedBytes > 0 ? $" {GiB(w.MemoryUsedBytes)}/{GiB(w.MemoryBytes)} GiB"
            : $" {GiB(w.MemoryBytes)} GiB";
        return $"{w.ExecutionProvider} {w.Device}{memory}".Trim();
    }
}
