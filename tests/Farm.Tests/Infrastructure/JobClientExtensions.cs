using Grpc.Core;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests.Infrastructure;

/// <summary>Client calls the tests make against whichever coordinator (replica) a <see cref="JobService.JobServiceClient"/> talks to.</summary>
public static class JobClientExtensions
{
    public static Task<SubmitJobResponse> SubmitAsync(this JobService.JobServiceClient jobs, JobHeader header, IEnumerable<string> prompts) =>
        jobs.SubmitItemsAsync(header, prompts.Select(p => new SubmitJobRequest { Prompt = new PromptItem { Prompt = p } }));

    /// <summary>Submits the header, then <paramref name="items"/> (prompts and input images) as they are.</summary>
    public static async Task<SubmitJobResponse> SubmitItemsAsync(this JobService.JobServiceClient jobs, JobHeader header,
        IEnumerable<SubmitJobRequest> items, CancellationToken cancellationToken = default, Metadata? headers = null)
    {
        using var call = jobs.SubmitJob(headers, cancellationToken: cancellationToken);
        // The coordinator may reject the batch while it is still streaming: its status is then the call's result.
        await call.RequestStream.WriteAllAsync(items.Prepend(new SubmitJobRequest { Header = header }), cancellationToken);
        return await call;
    }

    /// <summary>
    /// Reads the job's events (after <paramref name="afterEventId"/>, or from the start) until its final one; a test
    /// that injects faults as the job runs reacts to each event in <paramref name="onEvent"/> before the next is read.
    /// </summary>
    public static async Task<List<JobEvent>> WatchToEndAsync(this JobService.JobServiceClient jobs, string jobId, TimeSpan timeout,
        string afterEventId = "", Metadata? headers = null, Func<JobEvent, Task>? onEvent = null)
    {
        using var cts = new CancellationTokenSource(timeout);
        using var call = jobs.WatchJob(new WatchJobRequest { JobId = jobId, AfterEventId = afterEventId }, headers, cancellationToken: cts.Token);
        var events = new List<JobEvent>();
        while (await call.ResponseStream.MoveNext(cts.Token))
        {
            events.Add(call.ResponseStream.Current);
            if (onEvent is not null) await onEvent(call.ResponseStream.Current);
        }
        return events;
    }

    /// <summary>The steps reported for one shard, in the order they were appended.</summary>
    public static List<uint> StepsOf(this IEnumerable<JobEvent> events, uint shardIndex) =>
        events.Where(e => e.Step?.ShardIndex == shardIndex).Select(e => e.Step.Step).ToList();

    /// <summary>
    /// The registry's entry for a worker once it satisfies <paramref name="condition"/> (the registry is written as the
    /// worker's reports arrive, so a test waits for what it expects, up to a minute).
    /// </summary>
    public static async Task<WorkerInfo> WaitForWorkerAsync(this JobService.JobServiceClient jobs, string workerId, Func<WorkerInfo, bool> condition,
        Metadata? headers = null)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            var worker = (await jobs.ListWorkersAsync(new ListWorkersRequest(), headers)).Workers.FirstOrDefault(w => w.WorkerId == workerId);
            if (worker is not null && condition(worker)) return worker;
            Assert.True(DateTime.UtcNow < deadline, $"worker {workerId} did not get there: {worker}");
            await Task.Delay(200);
        }
    }
}
