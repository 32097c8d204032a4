namespace RenderFarm.FarmState.Retention;

/// <summary>
/// The work the retention sweep does, as members of <see cref="FarmKeys.RetentionDue"/> ("KIND:JOB", scored by when
/// it is next due, in ms). Every job is entered as <see cref="Job"/> when it is submitted, so none is missed.
/// </summary>
public static class RetentionTasks
{
    /// <summary>Look at a job: delete its records, results or inputs when their time has come, or say when to look again.</summary>
    public const string Job = "job";

    /// <summary>Delete a job's stored images (its records are gone already, or going: a deleted job's).</summary>
    public const string Results = "results";

    public static string Member(string kind, string jobId) => $"{kind}:{jobId}";

    /// <summary>The kind and job of a member; false for anything else.</summary>
    public static bool TryParse(string member, out string kind, out string jobId)
    {
        var colon = member.IndexOf(':');
        (kind, jobId) = colon > 0 ? (member[..colon], member[(colon + 1)..]) : ("", "");
        return kind is Job or Results && jobId.Length > 0;
    }
}
