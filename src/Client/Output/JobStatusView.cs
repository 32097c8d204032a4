using System.Globalization;
using System.Text.Json;
using System.Text;
using RenderFarm.Client.Cli;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Output;

/// <summary>How a job's status is shown: <c>farm status</c>, <c>jobs --json</c> and the job-control commands.</summary>
public static class JobStatusView
{
    /// <summary>The stable JSON shape of a job (one line, fields always present, times ISO-8601 UTC or null).</summary>
    public static string Json(JobStatus status) =>
        JsonText.Object(json =>
        {
            json.WriteString("job_id", status.JobId);
            json.WriteString("state", StateNames.Of(status.State));
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
            json.WriteString("refiner", p.Refiner);
            json.WriteNumber("refiner_start", Math.Round((double)p.RefinerStart, 4));
            json.WriteEndObject();
            json.WriteString("label", status.Label);
            json.WriteString("priority", status.Priority == Priority.Unspecified ? "normal" : status.Priority.ToString().ToLowerInvariant());
            json.WriteString("note", status.Note);
            json.WriteNumber("device_seconds", Math.Round(status.DeviceSeconds, 3));
            json.WriteNumber("device_seconds_per_image", Math.Round(PerImage(status), 3));
            json.WriteNumber("cost", status.Cost);
            WriteTime(json, "estimated_completion", status.EstimatedCompletionUnixMs);
            json.WriteString("webhook", status.Webhook);
        });

    /// <summary>The job's model, and its refiner with the switch for a base + refiner job ("sdxl-base, refiner sdxl-refiner at 0.8").</summary>
    public static string ModelText(GenerationParams? p)
    {
        var model = p is null || p.Model.Length == 0 ? "(default)" : p.Model;
        return p is { Refiner.Length: > 0 } ? Invariant($"{model}, refiner {p.Refiner} at {p.RefinerStart}") : model;
    }

    /// <summary>Device seconds per image stored (0 before the first).</summary>
    public static double PerImage(JobStatus status) => status.ImagesDone == 0 ? 0 : status.DeviceSeconds / status.ImagesDone;

    /// <summary>"12.3 s, 0.51 s/image" of worker device time, plus the cost when the farm prices device time.</summary>
    public static string DeviceTime(JobStatus status) =>
        Invariant($"{status.DeviceSeconds:0.###} s, {PerImage(status):0.###} s/image") +
        (status.Cost > 0 ? Invariant($", cost {status.Cost:0.####}") : "");

    /// <summary>Human view: aligned "key  value" rows.</summary>
    public static string Table(JobStatus status)
    {
        var p = status.Params ?? new GenerationParams();
        var rows = new List<(string Key, string Value)>
        {
            ("job", status.JobId),
            ("state", StateNames.Of(status.State)),
            ("images", Invariant($"{status.ImagesDone}/{status.ImageCount} done, {status.ImagesFailed} failed")),
            ("shards", Invariant($"{status.ShardsDone}/{status.ShardCount} done")),
            ("model", ModelText(p)),
            ("params", Invariant($"{p.Width}x{p.Height}, {p.Steps} steps, guidance {p.GuidanceScale}, {(p.Scheduler.Length == 0 ? "default" : p.Scheduler)} scheduler")),
            ("created", FormatTime(status.CreatedUnixMs) ?? "-"),
            ("finished", FormatTime(status.FinishedUnixMs) ?? "-"),
            ("priority", status.Priority.ToString().ToLowerInvariant()),
            ("device", DeviceTime(status)),
        };
        if (status.EstimatedCompletionUnixMs > 0)
        {
            rows.Add(("estimate", FormatTime(status.EstimatedCompletionUnixMs) + " (from the workers' measured speed and the queue ahead)"));
        }
        if (status.Webhook.Length > 0)
        {
            rows.Add(("webhook", CliErrors.OneLine(status.Webhook)));
        }
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
