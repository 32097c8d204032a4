using System.CommandLine;
using System.Globalization;
using RenderFarm.Client.Cli;
using RenderFarm.Client.Prompts;
using RenderFarm.Client.Submit;
using RenderFarm.Client.Watch;

namespace RenderFarm.Client.Commands;

/// <summary>
/// <c>farm submit FILE</c>: validates the whole prompt file first (nothing is sent if any line is bad), then streams
/// one JobHeader and the prompts to SubmitJob, each init image or mask once, just before the first prompt naming it.
/// stdout gets only the job id, so <c>id=$(farm submit p.txt | tail -1)</c> works with or without
/// <c>--watch</c>/<c>--out</c> (their output goes to stderr).
/// </summary>
public static class SubmitCommand
{
    public static Command Create(FarmCliHost host, GlobalOptions globals)
    {
        var options = new SubmitOptions();
        var command = new Command("submit",
            "Submit a batch of prompts as one job and print its id.\n\n" +
            "Examples:\n" +
            "  farm submit prompts.txt --seeds 1,2,3 --steps 30\n" +
            "  id=$(farm submit prompts.jsonl --size 768x512 | tail -1)\n" +
            "  cat prompts.txt | farm submit - --seed 42 --seed-count 4 --watch --out results/\n" +
            "  farm submit prompts.txt --init-image photo.png --strength 0.6\n" +
            "  farm submit prompts.txt --model sd15-control --control canny:photo.png:1.0:canny --control depth:depth.png:0.5\n" +
            "  farm submit prompts.csv --dry-run");
        options.AddTo(command);
        command.SetAction((parseResult, cancellationToken) => CommandContext.RunAsync(host, globals, parseResult, cancellationToken,
            context => RunAsync(context, options.Read(parseResult, context.Settings), cancellationToken)));
        return command;
    }

    /// <summary>Check the options, count the file (pass 1), then a dry run's report or the upload (pass 2) and its follow-up.</summary>
    public static async Task<int> RunAsync(CommandContext context, SubmitSettings settings, CancellationToken cancellationToken)
    {
        var plan = JobPlan.Create(settings, context.Host.RandomSeed);
        using var source = await PromptSource.OpenAsync(settings.File, settings.Format, context.Host.In, cancellationToken);

        // Pass 1: the whole file must be valid before anything is sent.
        var count = await BatchCount.CountAsync(source, plan, cancellationToken);
        plan.CheckBatch(count, source.DisplayName);
        if (settings.DryRun)
        {
            DryRunReport.Write(context.Out, source, plan, count);
            return ExitCodes.Ok;
        }

        // Pass 2: stream the header and the prompts; the file is read again, never held in memory.
        var (response, inputImagesSent) = await JobUploader.UploadAsync(context.Coordinator, source, plan.Header(), plan.Inputs, cancellationToken);

        var err = context.Error;
        var generation = plan.Generation;
        var inputsText = inputImagesSent > 0 ? $"; {inputImagesSent} input images" : "";
        err.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"submitted job {response.JobId}: {response.ImageCount} images in {response.ShardCount} shards " +
            $"({count.Prompts} prompts from {source.DisplayName}; {generation.Width}x{generation.Height}, {StepsText(plan)}{inputsText})"));
        if (plan.Seeds is { IsRandom: true } seedPlan)
        {
            var hint = seedPlan.Seeds.Count == 1
                ? $"--seed {seedPlan.Seeds[0]}"
                : $"--seed {seedPlan.Seeds[0]} --seed-count {seedPlan.Seeds.Count}";
            err.WriteLine($"seed {seedPlan.Describe()} chosen at random; reproduce with {hint}");
        }
        if (count.ControlWithRefinerNote is { } note)
        {
            err.WriteLine(note);
        }

        context.Out.WriteLine(response.JobId);
        await context.Out.FlushAsync(cancellationToken);

        if (!settings.Watch && settings.OutDir is null)
        {
            return ExitCodes.Ok;
        }

        // Follow-up output goes to stderr: stdout stays the job id alone.
        var watchCode = settings.Watch
            ? await WatchCommand.WatchAsync(context, response.JobId, context.Error, context.Host.ErrorIsTerminal && !settings.Plain, cancellationToken)
            : await WaitQuietlyAsync(context, response.JobId, cancellationToken);
        if (settings.OutDir is null || watchCode == ExitCodes.Unreachable)
        {
            return watchCode;
        }

        var pullCode = await PullCommand.PullAsync(context, response.JobId, settings.OutDir, context.Error, json: false, cancellationToken);
        return pullCode != ExitCodes.Ok ? pullCode : watchCode;
    }

    /// <summary>"20 steps", or "the model's steps (20 unless it has its own)" when steps were left to the model.</summary>
    private static string StepsText(JobPlan plan) => plan.Settings.LeftToModel is { Steps: true }
        ? string.Create(CultureInfo.InvariantCulture, $"the model's steps ({plan.Generation.Steps} unless it has its own)")
        : string.Create(CultureInfo.InvariantCulture, $"{plan.Generation.Steps} steps");

    private static async Task<int> WaitQuietlyAsync(CommandContext context, string jobId, CancellationToken cancellationToken)
    {
        context.Error.WriteLine($"waiting for job {jobId} to finish…");
        return await WatchCommand.WatchAsync(context, jobId, context.Error, live: false, cancellationToken, new QuietWatchObserver(context.Error));
    }
}
