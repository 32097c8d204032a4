using System.Globalization;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// Where a page of a tenant's job listing ended: the last job it examined, by its place in the tenant's job index
/// (creation time in ms, then id). The next page starts below it, so newer jobs submitted meanwhile do not shift it.
/// On the wire: "&lt;created ms&gt;.&lt;job id&gt;".
/// </summary>
public readonly record struct JobPageToken(long CreatedMs, string JobId)
{
    public override string ToString() => $"{CreatedMs.ToString(CultureInfo.InvariantCulture)}.{JobId}";

    /// <summary>Reads a token a listing handed out; false for anything else.</summary>
    public static bool TryParse(string text, out JobPageToken token)
    {
        token = default;
        int dot = text.IndexOf('.', StringComparison.Ordinal);
        if (dot <= 0 || !long.TryParse(text.AsSpan(0, dot), NumberStyles.None, CultureInfo.InvariantCulture, out var created)) return false;
        var jobId = text[(dot + 1)..];
        if (!JobIds.IsWellFormed(jobId)) return false;
        token = new JobPageToken(created, jobId);
        return true;
    }
}
