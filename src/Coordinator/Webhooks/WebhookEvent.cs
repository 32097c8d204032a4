using System.Globalization;
using System.Text.Json;
using RenderFarm.Protocol;

namespace RenderFarm.Coordinator.Webhooks;

/// <summary>The JSON a webhook receives when a job ends (one object, snake_case; README "Webhooks").</summary>
public static class WebhookEvent
{
    public const string Type = "job.finished";

    /// <summary>
    /// The event's id, which receivers dedupe by: one per end of the job (a retried job that ends again sends a new
    /// event), the same for every redelivery of it.
    /// </summary>
    public static string IdOf(JobStatus status) => string.Create(CultureInfo.InvariantCulture, $"{status.JobId}:{status.FinishedUnixMs}");

    public static byte[] Body(JobStatus status, DateTimeOffset sentAt)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("id", IdOf(status));
            json.WriteString("type", Type);
            json.WriteString("job_id", status.JobId);
            json.WriteString("state", status.State switch
            {
                JobState.Completed => "completed",
                JobState.Failed => "failed",
                JobState.Cancelled => "cancelled",
                _ => status.State.ToString().ToLowerInvariant(),
            });
            json.WriteNumber("image_count", status.ImageCount);
            json.WriteNumber("images_done", status.ImagesDone);
            json.WriteNumber("images_failed", status.ImagesFailed);
            json.WriteNumber("device_seconds", Math.Round(status.DeviceSeconds, 6));
            json.WriteNumber("cost", status.Cost);
            json.WriteString("label", status.Label);
            json.WriteString("finished_at", DateTimeOffset.FromUnixTimeMilliseconds(status.FinishedUnixMs).UtcDateTime.ToString("O", CultureInfo.InvariantCulture));
            json.WriteString("sent_at", sentAt.UtcDateTime.ToString("O", CultureInfo.InvariantCulture));
            json.WriteEndObject();
        }
        return buffer.ToArray();
    }
}
