using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using RenderFarm.Client.Cli;
using RenderFarm.Client.Connection;
using RenderFarm.Client.Output;
using RenderFarm.Client.Pull;
using RenderFarm.Client.Watch;
using RenderFarm.Protocol;
using RenderFarm.Shared;

namespace RenderFarm.Client.Commands;

/// <summary>
/// <c>farm pull JOB --out DIR</c>: downloads the job's finished images into DIR as
/// <c>&lt;index:D5&gt;-&lt;seed&gt;-&lt;slug&gt;.png</c>, verified by sha256, with <c>manifest.jsonl</c>. Images already
/// present and verified are skipped (their indices are sent as skip_indices), so a rerun resumes a killed pull
/// and ends with the same files. Where the result store hands out presigned URLs (S3) the images are fetched straight
/// from it, <see cref="PullOptions.Parallel"/> at a time; images whose URL fails come through the coordinator after.
/// </summary>
public static class PullCommand
{
    private const int MaxStreamAttempts = 5;
    private const int MaxErrorLines = 20;

    public static Command Create(FarmCliHost host, GlobalOptions globals)
    {
        var job = new Argument<string>("JOB") { Description = "Job id." };
        var outDir = new Option<string>("--out") { Description = "Folder for the images and manifest.jsonl (created if missing).", HelpName = "DIR", Required = true };
        var json = JsonFlag.Create("Print one JSON summary object instead of text.");
        var contactSheet = new Option<bool>("--contact-sheet")
        {
            Description = $"Also write {ContactSheet.FileName}: a grid of every image's thumbnail captioned with index, seed and prompt " +
                          $"(the first {ContactSheet.MaxImages} when there are more).",
        };
        var parallel = new Option<int>("--parallel")
        {
            Description = $"Images downloaded at once, 1-{PullOptions.MaxParallel}: N result streams from the coordinator, each covering " +
                          "every Nth image, and N images written at once. With an S3 result store the images come straight from the " +
                          "store through presigned URLs, N GETs at a time.",
            HelpName = "N",
            DefaultValueFactory = _ => PullOptions.DefaultParallel,
        };
        var viaCoordinator = new Option<bool>("--via-coordinator")
        {
            Description = "Stream every image through the coordinator even where the store hands out presigned URLs " +
                          "(for a machine that cannot reach the store).",
        };
        var plain = new Option<bool>("--plain") { Description = "Plain lines (saved FILE) even on a terminal, instead of the progress bar." };
        var command = new Command("pull",
            "Download a job's finished images (parallel, resumable; skips files already present and verified).\n\n" +
            "Files are named <index>-<seed>-<prompt-slug>.png; manifest.jsonl lists each image's index, prompt, negative prompt, " +
            "seed, file and sha256, sorted by index. Every file is checked against its sha256 before it gets its name, so a " +
            "killed pull leaves only complete files, and running it again fetches just the rest.\n\n" +
            "Examples:\n  farm pull 01HZX3Q9 --out results/\n  farm pull \"$id\" --out results/ --contact-sheet\n" +
            "  farm pull \"$id\" --out results/ --parallel 32 --json")
        {
            job, outDir, json, contactSheet, parallel, viaCoordinator, plain,
        };
        command.SetAction((parseResult, cancellationToken) => CommandContext.RunAsync(host, globals, parseResult, cancellationToken,
            context => PullAsync(context, JobIdArgument.Require(parseResult.GetRequiredValue(job)),
                parseResult.GetRequiredValue(outDir), context.Out, parseResult.GetValue(json), cancellationToken,
                parseResult.GetValue(contactSheet),
                new PullOptions(parseResult.GetValue(parallel), !parseResult.GetValue(viaCoordinator), parseResult.GetValue(plain)))));
        return command;
    }

    /// <summary>
    /// Pulls into <paramref name="directory"/>; <c>saved</c> lines and the folder go to <paramref name="output"/>, the
    /// progress bar (on a terminal) and notices to stderr.
    /// </summary>
    public static async Task<int> PullAsync(
        CommandContext context, string jobId, string directory, TextWriter output, bool json, CancellationToken cancellationToken,
        bool contactSheet = false, PullOptions? options = null)
    {
        options ??= new PullOptions();
        if (string.IsNullOrWhiteSpace(directory))
        {
            throw new CliUsageException("error: --out needs a folder");
        }

        if (options.Parallel is < 1 or > PullOptions.MaxParallel)
        {
            throw new CliUsageException($"error: --parallel must be between 1 and {PullOptions.MaxParallel}, got {options.Parallel}");
        }

        var coordinator = context.Coordinator;
        var status = await coordinator.Client.GetJobAsync(new GetJobRequest { JobId = jobId }, coordinator.CallOptions(cancellationToken));

        var fullDirectory = Path.GetFullPath(directory);
        Directory.CreateDirectory(fullDirectory);
        ResultDownloader.RemoveLeftovers(fullDirectory);
        var manifest = ResultManifest.Load(fullDirectory);
        var present = await manifest.VerifyAsync(options.Parallel, cancellationToken);

        using var http = options.PresignedUrls ? PresignedFetcher.CreateClient(options.Parallel) : null;
        var fetcher = http is null ? null : new PresignedFetcher(http, context.Host.Delay);
        var clock = Stopwatch.StartNew();
        var expected = (int)Math.Max(0, (long)status.ImagesDone - present.Count);
        var partitions = Partitions.For(status.ImageCount, present, Math.Min(options.Parallel, Math.Max(1, expected)));
        async Task<PullTally> Download(IPullProgress progress)
        {
            var downloader = new ResultDownloader(fullDirectory, manifest, progress, options.Parallel, fetcher);
            try
            {
                await DownloadAllAsync(context, jobId, partitions, downloader, options.PresignedUrls, progress, cancellationToken);
            }
            finally
            {
                await manifest.CompactAsync(CancellationToken.None);
            }

            return downloader.Tally;
        }

        var tally = context.Host.ErrorIsTerminal && !options.Plain
            ? await LivePullProgress.RunAsync(context.Error, expected, Download)
            : await Download(new PlainPullProgress(json ? null : output, context.Error));
        var elapsed = clock.Elapsed;

        var errors = tally.Errors;
        foreach (var error in errors.Take(MaxErrorLines))
        {
            context.Error.WriteLine("error: " + error);
        }

        if (errors.Count > MaxErrorLines)
        {
            context.Error.WriteLine($"error: ... and {errors.Count - MaxErrorLines} more (--json lists them all)");
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
            output.WriteLine(FormatJson(jobId, fullDirectory, tally, present.Count, manifest.Entries.Count, status, sheet?.Path, elapsed));
        }
        else
        {
            var failedNote = tally.Failed > 0 ? $", {tally.Failed} failed verification (run farm pull again to retry them)" : "";
            context.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"pulled {manifest.Entries.Count} images of job {jobId}: {tally.Downloaded} downloaded ({Throughput(tally, elapsed)}), " +
                $"{present.Count} already present{failedNote}"));
            if (!finished)
            {
                context.Error.WriteLine($"job {jobId} is still {StateNames.Of(status.State)}: run farm pull again when it finishes for the rest");
            }
            else if (status.State != JobState.Completed || status.ImagesFailed > 0)
            {
                context.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"job {jobId} {StateNames.Of(status.State)} with {status.ImagesFailed} failed images; those have no file"));
            }

            output.WriteLine(fullDirectory);
        }

        if (tally.Failed > 0)
        {
            return ExitCodes.Failed;
        }

        return finished && (status.State != JobState.Completed || status.ImagesFailed > 0) ? ExitCodes.Failed : ExitCodes.Ok;
    }

    /// <summary>
    /// One pass asking for presigned URLs (when allowed), then — for images whose URL failed, or everything left if
    /// the URLs were given up on — one pass of bytes through the coordinator.
    /// </summary>
    private static async Task DownloadAllAsync(
        CommandContext context, string jobId, Partitions partitions, ResultDownloader downloader, bool presignedUrls,
        IPullProgress progress, CancellationToken cancellationToken)
    {
        await DownloadPassAsync(context, jobId, partitions, downloader, presignedUrls, progress, cancellationToken);
        if (!presignedUrls)
        {
            return;
        }

        var abandoned = downloader.UrlsAbandoned;
        var (count, reason) = downloader.TakeFallback();
        if (abandoned is not null)
        {
            progress.Notice($"the result store's URLs keep failing ({abandoned}); streaming the remaining images through the coordinator");
        }
        else if (count > 0)
        {
            progress.Notice(string.Create(CultureInfo.InvariantCulture,
                $"{count} images could not be fetched from the result store ({reason}); streaming them through the coordinator"));
        }
        else
        {
            return;
        }

        await DownloadPassAsync(context, jobId, partitions, downloader, presignedUrls: false, progress, cancellationToken);
    }

    /// <summary>
    /// Reads one DownloadResults stream per partition at once into one set of writers. The coordinator walks each
    /// stream's images one after another (a database read, and a store read or presign, per image), so a 100k-image
    /// job listed over one stream waits on 100k round trips in a row; partitions overlap them.
    /// </summary>
    private static async Task DownloadPassAsync(
        CommandContext context, string jobId, Partitions partitions, ResultDownloader downloader, bool presignedUrls,
        IPullProgress progress, CancellationToken cancellationToken)
    {
        using var session = downloader.Start(cancellationToken);
        ExceptionDispatchInfo? readFailure = null;
        try
        {
            await Task.WhenAll(Enumerable.Range(0, partitions.Count).Select(partition =>
                ReadPartitionAsync(context, jobId, partitions, partition, session, downloader, presignedUrls, progress, cancellationToken)));
        }
        catch (Exception e)
        {
            readFailure = ExceptionDispatchInfo.Capture(e);
        }

        await session.CompleteAsync(); // a writer's failure (disk full) outranks a stream's
        readFailure?.Throw();
    }

    private static async Task ReadPartitionAsync(
        CommandContext context, string jobId, Partitions partitions, int partition, ResultDownloader.Session session,
        ResultDownloader downloader, bool presignedUrls, IPullProgress progress, CancellationToken cancellationToken)
    {
        var coordinator = context.Coordinator;
        for (var attempt = 1; ; attempt++)
        {
            var request = partitions.Request(jobId, partition, downloader.Handled, presignedUrls);
            try
            {
                await session.ReadAsync(ReadAsync(coordinator, request,
                    () => partitions.LegacyRequest(jobId, partition, downloader.Handled, presignedUrls), cancellationToken));
                return;
            }
            catch (Exception e) when (CliErrors.IsTransient(e, cancellationToken) && attempt < MaxStreamAttempts)
            {
                // GetJob just worked, so this is a broken stream, not a wrong address: resume, skipping what we have.
                var delay = context.Host.ReconnectPolicy.DelayFor(attempt);
                progress.Notice(string.Create(CultureInfo.InvariantCulture,
                    $"download interrupted ({JobWatcher.Reason(e)}); resuming in {delay.TotalSeconds:0.##}s"));
                await context.Host.Delay(delay, cancellationToken);
            }
        }
    }

    private static async IAsyncEnumerable<ResultChunk> ReadAsync(
        CoordinatorConnection coordinator, DownloadResultsRequest request, Func<DownloadResultsRequest> legacy,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var call = coordinator.Client.DownloadResults(request, coordinator.CallOptions(cancellationToken));
        try
        {
            if (request.PartitionCount > 1 && (await call.ResponseHeadersAsync).Get(FarmHeaders.Partitioned) is null)
            {
                // A coordinator from before partitions ignores them and would send this stream every image: ask it
                // again with the other partitions' indices in the skip list.
                call.Dispose();
                call = coordinator.Client.DownloadResults(legacy(), coordinator.CallOptions(cancellationToken));
            }
            while (await call.ResponseStream.MoveNext(cancellationToken))
            {
                yield return call.ResponseStream.Current;
            }
        }
        finally
        {
            call.Dispose();
        }
    }

    /// <summary>"1.2 MiB in 3.4 s, 590 images/s, 2000 from the store's URLs".</summary>
    private static string Throughput(PullTally tally, TimeSpan elapsed)
    {
        var seconds = Math.Max(elapsed.TotalSeconds, 1e-3);
        var viaUrls = tally.ViaUrls > 0 ? string.Create(CultureInfo.InvariantCulture, $", {tally.ViaUrls} from the store's URLs") : "";
        return string.Create(CultureInfo.InvariantCulture,
            $"{ByteSize.Short(tally.Bytes)} in {seconds:0.0} s, {tally.Downloaded / seconds:0} images/s{viaUrls}");
    }

    private static string FormatJson(
        string jobId, string directory, PullTally tally, int present, int total, JobStatus status, string? contactSheet, TimeSpan elapsed)
    {
        return JsonText.Object(json =>
        {
            json.WriteString("job_id", jobId);
            json.WriteString("state", StateNames.Of(status.State));
            json.WriteString("out_dir", directory);
            json.WriteString("manifest", Path.Combine(directory, ResultManifest.FileName));
            json.WriteNumber("images", total);
            json.WriteNumber("downloaded", tally.Downloaded);
            json.WriteNumber("skipped", present);
            json.WriteNumber("failed", tally.Failed);
            json.WriteNumber("bytes", tally.Bytes);
            json.WriteNumber("via_urls", tally.ViaUrls);
            json.WriteNumber("seconds", Math.Round(elapsed.TotalSeconds, 3));
            json.WriteString("contact_sheet", contactSheet);
            json.WriteStartArray("errors");
            foreach (var error in tally.Errors)
            {
                json.WriteStringValue(error);
            }

            json.WriteEndArray();
        });
    }
}
