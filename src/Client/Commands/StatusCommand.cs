using System.CommandLine;
using RenderFarm.Client.Cli;
using RenderFarm.Client.Output;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Commands;

/// <summary><c>farm status JOB [--json]</c>: one GetJob call, shown as a table or one JSON object.</summary>
public static class StatusCommand
{
    public static Command Create(FarmCliHost host, GlobalOptions globals)
    {
        var job = new Argument<string>("JOB") { Description = "Job id." };
        var json = JsonFlag.Create("Print one JSON object (snake_case fields: job_id, state, image_count, images_done, images_failed, " +
            "shard_count, shards_done, created, finished, params (model, width, height, steps, guidance_scale, scheduler, refiner, refiner_start), label, device_seconds, device_seconds_per_image, cost, estimated_completion, webhook).");
        var command = new Command("status",
            "Show a job's state and counts, and its device time: the worker render seconds of the images stored, in all " +
            "and per image (and what that cost, where the farm sets Farm:CostPerDeviceHour); for an unfinished job, when it is estimated " +
            "to finish (from the measured speed of the workers serving its model and the work queued ahead of it).\n\nExamples:\n  farm status 01HZX3Q9\n  farm status \"$id\" --json | jq -r .state")
        {
            job, json,
        };
        command.SetAction((parseResult, cancellationToken) => CommandContext.RunAsync(host, globals, parseResult, cancellationToken,
            async context =>
            {
                var jobId = JobIdArgument.Require(parseResult.GetRequiredValue(job));
                var coordinator = context.Coordinator;
                var status = await coordinator.Client.GetJobAsync(new GetJobRequest { JobId = jobId }, coordinator.CallOptions(cancellationToken));
                context.Out.Write(parseResult.GetValue(json) ? JobStatusView.Json(status) + "\n" : JobStatusView.Table(status));
                return ExitCodes.Ok;
            }));
        return command;
    }
}
