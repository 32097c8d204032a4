using System.CommandLine;
using System.Diagnostics;
using RenderFarm.Client.Cli;
using RenderFarm.Client.Pull;
using RenderFarm.Protocol;

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
        ResultWriter.RemoveLeftovers(fullDirectory);
        var manifest = ResultManifest.Load(fullDirectory, jobId);
        var present = await manifest.VerifyAsync(options.Parallel, cancellationToken);

        using var http = options.PresignedUrls ? PresignedFetcher.CreateClient(options.Parallel) : null;
        var clock = Stopwatch.StartNew();
        var expected = (int)Math.Max(0, (long)status.ImagesDone - present.Count);
        var partitions = Partitions.For(status.ImageCount, present, Math.Min(options.Parallel, Math.Max(1, expected)));
        async Task<PullTally> Download(IPullProgress progress)
        {
            var writer = new ResultWriter(fullDirectory, manifest, progress);
            var fetcher = http is null ? null : new PresignedFetcher(http, writer, context.Host.Time);
            var downloader = new ResultDownloader(writer, options.Parallel, fetcher);
            var streams = new ResultStreams(coordinator, jobId, partitions, downloader, progress, context.Host.ReconnectPolicy, context.Host.Time);
            try
            {
                await streams.DownloadAsync(options.PresignedUrls, cancellationToken);
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

        var summary = new PullSummary(jobId, fullDirectory, tally, present.Count, manifest.Entries.Count, status, sheet?.Path, elapsed);
        if (json)
        {
            output.WriteLine(summary.Json());
        }
        else
        {
            summary.WriteText(output, context.Error);
        }

        return summary.ExitCode;
    }
}
