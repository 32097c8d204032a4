namespace RenderFarm.Coordinator.Retention;

/// <summary>What retention needs to know of a job (see <see cref="Jobs.JobRepository.GetRetentionStateAsync"/>).</summary>
/// <param name="Exists">It still has records.</param>
/// <param name="FinishedMs">When it finished (ms); null while it has not (or was re-opened by a retry).</param>
/// <param name="HasInputs">A failed job that still keeps init images or masks for a retry.</param>
public sealed record JobRetentionState(bool Exists, string Tenant, long? FinishedMs, bool Failed, bool HasInputs, bool ResultsExpired);

/// <summary>What to do about a job now, and when to look at it again.</summary>
/// <param name="NextCheckMs">When the job is next due (ms); null: never again (its records are gone, or nothing more ever expires).</param>
/// <param name="ResultsDueMs">Its records go now but its images later: when to delete them (ms).</param>
public readonly record struct RetentionDecision(bool DeleteRecords, bool DeleteResults, bool DropInputs, long? NextCheckMs, long? ResultsDueMs);

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
