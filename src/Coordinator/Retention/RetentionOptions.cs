using System.ComponentModel.DataAnnotations;

namespace RenderFarm.Coordinator.Retention;

/// <summary>
/// <c>Farm:Retention</c>: how long finished work is kept. Periods are in days and may be fractional (a soak test runs
/// on seconds: <c>0.0001</c> is 8.64 s); 0 keeps that kind of data forever. All count from when the job finished.
/// </summary>
public sealed class RetentionOptions
{
    public const string Section = "Farm:Retention";

    /// <summary>A finished job's records (status, image records, events, failures) are deleted this long after it finished.</summary>
    [Range(0, 36_500)] public double JobDays { get; set; } = 30;

    /// <summary>
    /// A finished job's stored images are deleted this long after it finished; 0 = never (then they outlive the job's
    /// records, in the store only). Match the store's own expiry to it (the S3 lifecycle rule in deploy/s3).
    /// </summary>
    [Range(0, 36_500)] public double ResultDays { get; set; } = 30;

    /// <summary>A failed job's init images and masks, kept so that `farm retry` can re-render its failed images, are dropped this long after it failed.</summary>
    [Range(0, 36_500)] public double FailedInputDays { get; set; } = 7;

    /// <summary>A worker offline this long leaves the registry (`farm workers`) and its task-stream consumers are removed.</summary>
    [Range(0, 36_500)] public double WorkerDays { get; set; } = 7;

    /// <summary>How often each coordinator looks for due work (several coordinators share it, each taking different jobs).</summary>
    [Range(0.05, 86_400)] public double SweepIntervalSeconds { get; set; } = 60;

    public TimeSpan? Jobs => Period(JobDays);
    public TimeSpan? Results => Period(ResultDays);
    public TimeSpan? FailedInputs => Period(FailedInputDays);
    public TimeSpan? Workers => Period(WorkerDays);
    public TimeSpan SweepInterval => TimeSpan.FromSeconds(SweepIntervalSeconds);

    /// <summary>
    /// How soon an unfinished job is looked at again: an hour, or the shortest period if shorter, so that whatever falls
    /// due after it finishes is done at most that late.
    /// </summary>
    public TimeSpan Recheck => new[] { Jobs, Results, FailedInputs }.OfType<TimeSpan>().Append(TimeSpan.FromHours(1)).Min();

    private static TimeSpan? Period(double days) => days > 0 ? TimeSpan.FromDays(days) : null;
}
