namespace RenderFarm.FarmState.Commits;

/// <summary>
/// A commit in progress, as the commit journal (<see cref="FarmKeys.CommitJournal"/>) names it: a job and, for a retry or
/// a resume, the batch of staged shards it publishes (<see cref="FarmKeys.JobStagedShards"/>); a submission publishes the
/// job's own staged list (batch empty). Its <see cref="Member"/> is <c>JOB</c> or <c>JOB/BATCH</c>, the batch starting
/// <see cref="RetryPrefix"/> or <see cref="ResumePrefix"/>, which says its <see cref="Kind"/>.
/// </summary>
public sealed record OpenCommit(string JobId, string Batch)
{
    /// <summary>Between the job id and the batch in a <see cref="Member"/> (job ids never hold it).</summary>
    public const char Separator = '/';

    public const string RetryPrefix = "retry-";
    public const string ResumePrefix = "resume-";

    public static OpenCommit Submission(string jobId) => new(jobId, "");

    /// <summary>A new retry of the job, with a batch of its own (concurrent retries never mix their shards).</summary>
    public static OpenCommit Retry(string jobId) => new(jobId, $"{RetryPrefix}{Guid.NewGuid():N}");

    /// <summary>A new resume of the job, with a batch of its own for the parked shards it takes.</summary>
    public static OpenCommit Resume(string jobId) => new(jobId, $"{ResumePrefix}{Guid.NewGuid():N}");

    public CommitKind Kind => Batch.Length == 0 ? CommitKind.Submission
        : Batch.StartsWith(RetryPrefix, StringComparison.Ordinal) ? CommitKind.Retry : CommitKind.Resume;

    /// <summary>The commit's member of <see cref="FarmKeys.CommitJournal"/>.</summary>
    public string Member => Batch.Length == 0 ? JobId : $"{JobId}{Separator}{Batch}";

    /// <summary>The list of shards the commit publishes.</summary>
    public string StagedShards => FarmKeys.JobStagedShards(JobId, Batch);

    /// <summary>The commit's token (<see cref="FarmKeys.JobCommitToken"/>): its first write to the job needs it.</summary>
    public string Token => FarmKeys.JobCommitToken(JobId, Batch);

    /// <summary>The commit a journal member names; null for a member this layout does not produce.</summary>
    public static OpenCommit? Parse(string member)
    {
        var parts = member.Split(Separator);
        if (parts[0].Length == 0 || parts[0].IndexOfAny(['{', '}']) >= 0) return null;
        if (parts.Length == 1) return Submission(parts[0]);
        return parts.Length == 2 && (Names(parts[1], RetryPrefix) || Names(parts[1], ResumePrefix)) ? new OpenCommit(parts[0], parts[1]) : null;

        static bool Names(string batch, string prefix) => batch.Length > prefix.Length && batch.StartsWith(prefix, StringComparison.Ordinal);
    }

    public override string ToString() => Member;
}
