using RenderFarm.Coordinator.Jobs;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests;

/// <summary>The admission of a batch of results (one script call): the job's images only, none once it is cancelled or gone.</summary>
public sealed class ResultAdmissionTests
{
    [Fact]
    public async Task OnlyTheJobsImagesAreAdmittedAndNoneOnceTheJobIsCancelledOrGone()
    {
        await using var farm = await FarmCluster.StartAsync(workers: 0, shardSize: 2);
        var jobs = farm.CoordinatorServices.GetRequiredService<JobRepository>();
        var job = await farm.SubmitAsync(
            new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7f }, Seeds = { 1 } },
            Enumerable.Range(0, 3).Select(i => new PromptItem { Prompt = $"admitted {i}" }));

        Assert.Equal([ResultAdmission.Accepted, ResultAdmission.UnknownImage, ResultAdmission.Accepted, ResultAdmission.Accepted],
            await jobs.AdmitResultsAsync(job.JobId, [0, 3, 2, 1]));
        Assert.Equal([ResultAdmission.UnknownImage], await jobs.AdmitResultsAsync("j" + new string('0', 25), [0]));

        await farm.Jobs.CancelJobAsync(new CancelJobRequest { JobId = job.JobId });
        Assert.Equal([ResultAdmission.Cancelled, ResultAdmission.UnknownImage], await jobs.AdmitResultsAsync(job.JobId, [1, 7]));
    }
}
