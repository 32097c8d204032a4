using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using RenderFarm.Protocol;

namespace RenderFarm.Client;

/// <summary><c>farm status JOB [--json]</c>: one GetJob call, shown as a table or one JSON object.</summary>
public static class StatusCommand
{
    public static Command Create(FarmCliHost host, GlobalOptions globals)
    {
        var job = new Argument<string>("JOB") { Description = "Job id." };
        var json = new Option<bool>("--json")
        {
            Description = "Print one JSON object (snake_case fields: job_id, state, image_count, images_done, images_failed, " +
                          "shard_count, shards_done, created, finished, params, label).",
        };
        var command = new Command("status",
            "Show a job's state and counts.\n\nExamples:\n  farm status 01HZX3Q9\n  farm status \"$id\" --json | jq -r .state")
        {
            job, json,
        };
        command.SetAction((parseResult, cancellationToken) => CommandContext.RunAsync(host, globals, parseResult, cancellationToken,
            async context =>
            {
                var jobId = WatchCommand.RequireJobId(parseResult.GetRequiredValue(job));
                var coordinator = context.Coordinator;
                var status = await coordinator.Client.GetJobAsync(new GetJobRequest { JobId = jobId }, coordinator.CallOptions(cancellationToken));
                context.Out.Write(parseResult.GetValue(json) ? FormatJson(status) + "\n" : FormatTable(status));
                return ExitCodes.Ok;
            }));
        return command;
    }

    /// <summary>The stable JSON shape of a job (one line, fields always present, times ISO-8601 UTC or null).</summary>
    public static string FormatJson(JobStatus status)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            json.WriteString("job_id", status.JobId);
            json.WriteString("state", PlainWatchObserver.StateName(status.State));
            json.WriteNumber("image_count", status.ImageCount);
            json.WriteNumber("images_done", status.ImagesDone);
            json.WriteNumber("images_failed", status.ImagesFailed);
            json.WriteNumber("shard_count", status.ShardCount);
            json.WriteNumber("shards_done", status.ShardsDone);
            WriteTime(json, "created", status.CreatedUnixMs);
            WriteTime(json, "finished", status.FinishedUnixMs);
            json.WriteStartObject("params");
            var p = status.Params ?? new GenerationParams();
            json.WriteString("model", p.Model);
            json.WriteNumber("width", p.Width);
            json.WriteNumber("height", p.Height);
            json.WriteNumber("steps", p.Steps);
            json.WriteNumber("guidance_scale", Math.Round((double)p.GuidanceScale, 4));
            json.WriteString("scheduler", p.Scheduler);
            json.WriteEndObject();
            json.WriteString("label", status.Label);
            json.WriteString("priority", status.Priority == Priority.Unspecified ? "normal" : status.Priority.ToString().ToLowerInvariant());
            json.WriteString("note", status.Note);
            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    /// <summary>Human view: aligned "key  value" rows.</summary>
    public static string FormatTable(JobStatus status)
    {
        var p = status.Params ?? new GenerationParams();
        var rows = new List<(string Key, string Value)>
        {
            ("job", status.JobId),
            ("state", PlainWatchObserver.StateName(status.State)),
            ("images", Invariant($"{status.ImagesDone}/{status.ImageCount} done, {status.ImagesFailed} failed")),
            ("shards", Invariant($"{status.ShardsDone}/{status.ShardCount} done")),
            ("model", p.Model.Length == 0 ? "(default)" : p.Model),
            ("params", Invariant($"{p.Width}x{p.Height}, {p.Steps} steps, guidance {p.GuidanceScale}, {(p.Scheduler.Length == 0 ? "default" : p.Scheduler)} scheduler")),
            ("created", FormatTime(status.CreatedUnixMs) ?? "-"),
            ("finished", FormatTime(status.FinishedUnixMs) ?? "-"),
            ("priority", status.Priority.ToString().ToLowerInvariant()),
        };
        if (status.Note.Length > 0)
        {
            rows.Add(("note", CliErrors.OneLine(status.Note)));
        }
        if (status.Label.Length > 0)
        {
            rows.Add(("label", CliErrors.OneLine(status.Label)));
        }

        var width = rows.Max(r => r.Key.Length) + 2;
        var text = new StringBuilder();
        foreach (var (key, value) in rows)
        {
            text.Append(key.PadRight(width)).Append(value).Append('\n');
        }

        return text.ToString();
    }

    private static void WriteTime(Utf8JsonWriter json, string name, long unixMs)
    {
        if (FormatTime(unixMs) is { } text)
        {
            json.WriteString(name, text);
        }
        else
        {
            json.WriteNull(name);
        }
    }

    private static string? FormatTime(long unixMs) =>
        unixMs <= 0 ? null : DateTimeOffset.FromUnixTimeMilliseconds(unixMs).UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
