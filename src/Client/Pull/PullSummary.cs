using System.Globalization;
using RenderFarm.Client.Output;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Pull;

/// <summary>How a pull ended, as <c>farm pull</c> reports it: lines on stderr and the folder on stdout, or one JSON object.</summary>
public sealed record PullSummary(
    string JobId, string Directory, PullTally Tally, int Present, int Total, JobStatus Status, string? ContactSheet, TimeSpan Elapsed)
{
    /// <summary>The job has no more images coming.</summary>
    public bool JobFinished => Status.State is JobState.Completed or JobState.Failed or JobState.Cancelled;

    /// <summary>0 when every image the job has is here and verified and the job completed without failures.</summary>
    public int ExitCode =>
        Tally.Failed > 0 || JobFinished && (Status.State != JobState.Completed || Status.ImagesFailed > 0) ? ExitCodes.Failed : ExitCodes.Ok;

    public void WriteText(TextWriter output, TextWriter notices)
    {
        var failedNote = Tally.Failed > 0 ? $", {Tally.Failed} failed verification (run farm pull again to retry them)" : "";
        notices.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"pulled {Total} images of job {JobId}: {Tally.Downloaded} downloaded ({Throughput()}), " +
            $"{Present} already present{failedNote}"));
        if (!JobFinished)
        {
            notices.WriteLine($"job {JobId} is still {StateNames.Of(Status.State)}: run farm pull again when it finishes for the rest");
        }
        else if (Status.State != JobState.Completed || Status.ImagesFailed > 0)
        {
            notices.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"job {JobId} {StateNames.Of(Status.State)} with {Status.ImagesFailed} failed images; those have no file"));
        }

        output.WriteLine(Directory);
    }

    public string Json() =>
        JsonText.Object(json =>
        {
            json.WriteString("job_id", JobId);
            json.WriteString("state", StateNames.Of(Status.State));
            json.WriteString("out_dir", Directory);
            json.WriteString("manifest", Path.Combine(Directory, ResultManifest.FileName));
            json.WriteNumber("images", Total);
            json.WriteNumber("downloaded", Tally.Downloaded);
            json.WriteNumber("skipped", Present);
            json.WriteNumber("failed", Tally.Failed);
            json.WriteNumber("bytes", Tally.Bytes);
            json.WriteNumber("via_urls", Tally.ViaUrls);
            json.WriteNumber("seconds", Math.Round(Elapsed.TotalSeconds, 3));
            json.WriteString("contact_sheet", ContactSheet);
            json.WriteStartArray("errors");
            foreach (var error in Tally.Errors)
            {
                json.WriteStringValue(error);
            }

            json.WriteEndArray();
        });

    /// <summary>"1.2 MiB in 3.4 s, 590 images/s, 2000 from the store's URLs".</summary>
    private string Throughput()
    {
        var seconds = Math.Max(Elapsed.TotalSeconds, 1e-3);
        var viaUrls = Tally.ViaUrls > 0 ? string.Create(CultureInfo.InvariantCulture, $", {Tally.ViaUrls} from the store's URLs") : "";
        return string.Create(CultureInfo.InvariantCulture,
            $"{ByteSize.Short(Tally.Bytes)} in {seconds:0.0} s, {Tally.Downloaded / seconds:0} images/s{viaUrls}");
    }
}
