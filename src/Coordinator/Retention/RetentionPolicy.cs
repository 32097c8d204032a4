namespace RenderFarm.Coordinator.Retention;

/// <summary>The retention rules (<see cref="RetentionOptions"/>) applied to one job: pure, so they are tested without Redis.</summary>
public sealed class RetentionPolicy(RetentionOptions options)
{
    public RetentionDecision Decide(JobRetentionState job, long nowMs)
    {
        if (!job.Exists) return default;
        if (job.FinishedMs is not long finished) return new RetentionDecision(false, false, false, nowMs + Ms(options.Recheck), null);

        long? Due(TimeSpan? period, bool applies) => period is { } p && applies ? finished + Ms(p) : null;
        var records = Due(options.Jobs, true);
        var results = Due(options.Results, !job.ResultsExpired);
        var inputs = Due(options.FailedInputs, job.Failed && job.HasInputs);
        bool Now(long? due) => due <= nowMs;

        if (Now(records))
            return new RetentionDecision(true, Now(results), false, null, Now(results) ? null : results);
        long?[] later = [records, Now(results) ? null : results, Now(inputs) ? null : inputs];
        var next = later.Where(d => d is not null).Min();
        return new RetentionDecision(false, Now(results), Now(inputs), next, null);
    }

    private static long Ms(TimeSpan period) => (long)period.TotalMilliseconds;
}
