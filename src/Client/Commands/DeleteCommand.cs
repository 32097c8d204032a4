using System.CommandLine;
using RenderFarm.Client.Cli;
using RenderFarm.Client.Output;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Commands;

/// <summary><c>farm delete JOB</c>.</summary>
public static class DeleteCommand
{
    public static Command Create(FarmCliHost host, GlobalOptions globals)
    {
        var job = new Argument<string>("JOB") { Description = "Job id." };
        var json = JsonFlag.Create("Print what was deleted as JSON: job_id, cancelled, images_deleted.");
        var command = new Command("delete",
            "Delete one of your jobs now: its records, events and stored images (the farm also deletes finished jobs " +
            "after its retention period). A job that has not finished is cancelled first. This cannot be undone; " +
            "pull the images first if you want them.\n\nExample:\n  farm pull \"$id\" --out renders/ && farm delete \"$id\"")
        {
            job, json,
        };
        command.SetAction((parseResult, ct) => CommandContext.RunAsync(host, globals, parseResult, ct, async context =>
        {
            var jobId = JobIdArgument.Require(parseResult.GetRequiredValue(job));
            var deleted = await context.Coordinator.Client.DeleteJobAsync(new DeleteJobRequest { JobId = jobId }, context.Coordinator.CallOptions(ct));
            context.Out.Write(parseResult.GetValue(json)
                ? JsonText.Object(w =>
                {
                    w.WriteString("job_id", deleted.JobId);
                    w.WriteBoolean("cancelled", deleted.Cancelled);
                    w.WriteNumber("images_deleted", deleted.ImagesDeleted);
                }) + "\n"
                : $"deleted job {deleted.JobId}{(deleted.Cancelled ? " (cancelled first)" : "")}: records and {deleted.ImagesDeleted} stored images\n");
            return ExitCodes.Ok;
        }));
        return command;
    }
}
