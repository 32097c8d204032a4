using System.CommandLine;
using Grpc.Core;
using RenderFarm.Client.Cli;
using RenderFarm.Client.Output;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Commands;

/// <summary>
/// The shape of <c>cancel</c>, <c>pause</c>, <c>resume</c> and <c>retry</c>: change one job, then print its status
/// (table, or JSON with <c>--json</c>).
/// </summary>
public static class JobControlCommand
{
    public static Command Create(FarmCliHost host, GlobalOptions globals, string name, string description,
        Func<JobService.JobServiceClient, string, CallOptions, Task<JobStatus>> call)
    {
        var job = new Argument<string>("JOB") { Description = "Job id." };
        var json = JsonFlag.Create("Print the job's status afterwards as JSON (the `farm status --json` shape).");
        var command = new Command(name, description) { job, json };
        command.SetAction((parseResult, ct) => CommandContext.RunAsync(host, globals, parseResult, ct, async context =>
        {
            var jobId = JobIdArgument.Require(parseResult.GetRequiredValue(job));
            var status = await call(context.Coordinator.Client, jobId, context.Coordinator.CallOptions(ct));
            context.Out.Write(parseResult.GetValue(json) ? JobStatusView.Json(status) + "\n" : JobStatusView.Table(status));
            return ExitCodes.Ok;
        }));
        return command;
    }
}
