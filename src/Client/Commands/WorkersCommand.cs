using System.CommandLine;
using System.Globalization;
using RenderFarm.Client.Cli;
using RenderFarm.Client.Output;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Commands;

/// <summary><c>farm workers</c>: the farm's workers as a table or a JSON array; <c>workers release</c> is its subcommand.</summary>
public static class WorkersCommand
{
    public static Command Create(FarmCliHost host, GlobalOptions globals)
    {
        var json = JsonFlag.Create("Print a JSON array (worker_id, state, loading, models, max_batch, execution_provider, device, current_job_id, " +
                              "current_shard, images_done, shards_failed, it_per_sec, memory_bytes, last_seen).");
        var command = new Command("workers", "List the farm's workers: state (loading, idle, busy, offline, quarantined), current shard, images done, it/s.\n" +
                                             "A worker still loading or warming up its models says what it is doing (a TensorRT engine build takes minutes) and takes no shards yet.\n\n" +
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
                    j.WriteNumber("max_batch", w.MaxBatch);
                    j.WriteString("execution_provider", w.ExecutionProvider);
                    j.WriteString("device", w.Device);
                    j.WriteString("current_job_id", w.CurrentJobId);
                    j.WriteNumber("current_shard", w.CurrentShard);
                    j.WriteNumber("images_done", w.ImagesDone);
                    j.WriteNumber("shards_failed", w.ShardsFailed);
                    j.WriteNumber("it_per_sec", Math.Round((double)w.ItPerSec, 2));
                    j.WriteNumber("memory_bytes", w.MemoryBytes);
                    j.WriteString("last_seen", TextTable.Time(w.LastSeenUnixMs));
                }));
            }
            else
            {
                context.Out.Write(TextTable.Format(["WORKER", "STATE", "MODELS", "DEVICE", "JOB/SHARD", "IMAGES", "FAILED", "IT/S", "LAST SEEN"],
                    response.Workers.Select(w => (IReadOnlyList<string>)
                    [
                        w.WorkerId, State(w), string.Join(",", w.Models), Device(w),
                        w.CurrentJobId.Length == 0 ? "-" : $"{w.CurrentJobId}/{w.CurrentShard}", TextTable.Number(w.ImagesDone), TextTable.Number(w.ShardsFailed),
                        w.ItPerSec.ToString("0.0", CultureInfo.InvariantCulture), TextTable.Time(w.LastSeenUnixMs),
                    ])));
            }
            return ExitCodes.Ok;
        }));
        return command;
    }

    /// <summary>The state; for a loading worker, what it is doing ("loading sd15 (building TensorRT engine)").</summary>
    private static string State(WorkerInfo w) => w.State == WorkerState.Loading && w.Loading.Length > 0 ? w.Loading : StateNames.Of(w.State);

    /// <summary>Provider, device and memory, e.g. "cuda NVIDIA H100 80GB HBM3 79.6 GiB".</summary>
    private static string Device(WorkerInfo w) =>
        string.Create(CultureInfo.InvariantCulture, $"{w.ExecutionProvider} {w.Device}{(w.MemoryBytes > 0 ? $" {w.MemoryBytes / (double)(1L << 30):0.#} GiB" : "")}").Trim();
}
