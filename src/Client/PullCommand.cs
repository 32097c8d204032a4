using System.CommandLine;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using RenderFarm.Protocol;

namespace RenderFarm.Client;

/// <summary>
/// <c>farm pull JOB --out DIR</c>: downloads the job's finished images into DIR as
/// <c>&lt;index:D5&gt;-&lt;seed&gt;-&lt;slug&gt;.png</c>, verified by sha256, with <c>manifest.jsonl</c>. Images already
/// present and verified are skipped (their indices are sent as skip_indices), so a rerun resumes a killed pull
/// and ends with the same files.
/// </summary>
public static class PullCommand
{
    private const int MaxStreamAttempts = 5;

    public static Command Create(FarmCliHost host, GlobalOptions globals)
    {
        var job = new Argument<string>("JOB") { Description = "Job id." };
        var outDir = new Option<string>("--out") { Description = "Folder for the images and manifest.jsonl (created if missing).", HelpName = "DIR", Required = true };
        var json = new Option<bool>("--json") { Description = "Print one JSON summary object instead of text." };
        var contactSheet = new Option<bool>("--contact-sheet")
        {
            Description = $"Also write {ContactSheet.FileName}: a grid of every image's thumbnail captioned with index, seed and prompt " +
                          $"(the first {ContactSheet.MaxImages} when there are more).",
        };
        var command = new Command("pull",
            "Download a job's finished images (resumable; skips files already present and verified).\n\n" +
            "Examples:\n  farm pull 01HZX3Q9 --out results/\n  farm pull \"$id\" --out results/ --contact-sheet\n  farm pull \"$id\" --out results/ --json")
        {
            job, outDir, json, contactSheet,
        };
        command.SetAction((parseResult, cancellationToken) => CommandContext.RunAsync(host, globals, parseResult, cancellationToken,
            context => PullAsync(context, WatchCommand.RequireJobId(parseResult.GetRequiredValue(job)),
                parseResult.GetRequiredValue(outDir), context.Out, parseResult.GetValue(json), cancellationToken,
                parseResult.GetValue(contactSheet))));
        return command;
    }

    /// <summary>Pulls into <paramref name="directory"/>; progress lines and the folder go to <paramref name="output"/>.</summary>
    public static async Task<int> PullAsync(
        CommandContext context, string jobId, string directory, TextWriter output, bool json, CancellationToken cancellationToken,
        bool contactSheet = false)
    {
        if (string.IsNullOrWhiteSpace(directory))
        {
            throw new CliUsageException("error: --out needs a folder");
        }

        var coordinator = context.Coordinator;
        var status = await coordinator.Client.GetJobAsync(new GetJobRequest { JobId = jobId }, coordinator.CallOptions(cancellationToken));

        var fullDirectory = Path.GetFullPath(directory);
        Directory.CreateDirectory(fullDirectory);
        ResultDownloader.RemoveLeftovers(fullDirectory);
        var manifest = ResultManifest.Load(fullDirectory);
        var present = await manifest.VerifyAsync(cancellationToken);
        var downloader = new ResultDownloader(fullDirectory, manifest, json ? null : name => output.WriteLine($"saved {name}"));

        try
        {
            await DownloadWithRetriesAsync(context, jobId, present, downloader, cancellationToken);
        }
        finally
        {
            await manifest.CompactAsync(CancellationToken.None);
        }

        var tally = downloader.Tally;
        foreach (var error in tally.Errors)
        {
            context.Error.WriteLine("error: " + error);
        }

        var sheet = contactSheet ? ContactSheet.Write(fullDirectory, manifest.Entries, cancellationToken) : null;
        if (sheet is not null && !json)
        {
            var shown = sheet.Layout.Truncated ? $"the first {sheet.Layout.Count} of {sheet.Layout.Total}" : $"{sheet.Layout.Count}";
            var bad = sheet.Unreadable > 0 ? $"; {sheet.Unreadable} could not be decoded" : "";
            context.Error.WriteLine($"wrote {sheet.Path}: {shown} images, {sheet.Layout.Columns}x{sheet.Layout.Rows} grid{bad}");
        }

        var finished = status.State is JobState.Completed or JobState.Failed or JobState.Cancelled;
        if (json)
        {
            output.WriteLine(FormatJson(jobId, fullDirectory, tally, present.Count, manifest.Entries.Count, status, sheet?.Path));
        }
        else
        {
            var failedNote = tally.Failed > 0 ? $", {tally.Failed} failed verification (run farm pull again to retry them)" : "";
            context.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"pulled {manifest.Entries.Count} images of job {jobId}: {tally.Downloaded} downloaded, {present.Count} already present{failedNote}"));
            if (!finished)
            {
                context.Error.WriteLine($"job {jobId} is still {PlainWatchObserver.StateName(status.State)}: run farm pull again when it finishes for the rest");
            }
            else if (status.State != JobState.Completed || status.ImagesFailed > 0)
            {
                context.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"job {jobId} {PlainWatchObserver.StateName(status.State)} with {status.ImagesFailed} failed images; those have no file"));
            }

            output.WriteLine(fullDirectory);
        }

        if (tally.Failed > 0)
        {
            return ExitCodes.Failed;
        }

        return finished && (status.State != JobState.Completed || status.ImagesFailed > 0) ? ExitCodes.Failed : ExitCodes.Ok;
    }

    private static async Task DownloadWithRetriesAsync(
        CommandContext context, string jobId, IReadOnlyList<uint> present, ResultDownloader downloader, CancellationToken cancellationToken)
    {
        var coordinator = context.Coordinator;
        for (var attempt = 1; ; attempt++)
        {
            var request = new DownloadResultsRequest { JobId = jobId };
            request.SkipIndices.AddRange(present);
            request.SkipIndices.AddRange(downloader.Saved);
            try
            {
                await downloader.ReceiveAsync(ReadAsync(coordinator, request, cancellationToken), cancellationToken);
                return;
            }
            catch (Exception e) when (CliErrors.IsTransient(e, cancellationToken) && attempt < MaxStreamAttempts)
            {
                // GetJob just worked, so this is a broken stream, not a wrong address: resume, skipping what we have.
                var delay = context.Host.ReconnectPolicy.DelayFor(attempt);
                context.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"download interrupted ({JobWatcher.Reason(e)}); resuming in {delay.TotalSeconds:0.##}s"));
                await context.Host.Delay(delay, cancellationToken);
            }
        }
    }

    private static async IAsyncEnumerable<ResultChunk> ReadAsync(
        Coordinator coordinator, DownloadResultsRequest request, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        using var call = coordinator.Client.DownloadResults(request, coordinator.CallOptions(cancellationToken));
        while (await call.ResponseStream.MoveNext(cancellationToken))
        {
            yield return call.ResponseStream.Current;
        }
    }

    private static string FormatJson(string jobId, string directory, PullTally tally, int present, int total, JobStatus status, string? contactSheet)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            json.WriteString("job_id", jobId);
            json.WriteString("state", PlainWatchObserver.StateName(status.State));
            json.WriteString("out_dir", directory);
            json.WriteString("manifest", Path.Combine(directory, ResultManifest.FileName));
            json.WriteNumber("images", total);
            json.WriteNumber("downloaded", tally.Downloaded);
            json.WriteNumber("skipped", present);
            json.WriteNumber("failed", tally.Failed);
            json.WriteString("contact_sheet", contactSheet);
            json.WriteStartArray("errors");
            foreach (var error in tally.Errors)
            {
                json.WriteStringValue(error);
            }

            json.WriteEndArray();
            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }
}
