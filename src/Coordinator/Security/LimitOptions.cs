using System.ComponentModel.DataAnnotations;

namespace RenderFarm.Coordinator.Security;

/// <summary><c>Farm:Limits</c>: what one tenant may have in flight and how often it may submit.</summary>
public sealed class LimitOptions
{
    public const string Section = "Farm:Limits";

    /// <summary>Images queued or running across the tenant's unfinished jobs.</summary>
    [Range(1, long.MaxValue)] public long MaxQueuedImagesPerTenant { get; set; } = 2_000_000;

    /// <summary>Unfinished (queued, running, paused) jobs per tenant.</summary>
    [Range(1, 100_000)] public int MaxActiveJobsPerTenant { get; set; } = 100;

    /// <summary>Submissions per tenant per minute (a fixed one-minute window).</summary>
    [Range(1, 1_000_000)] public int SubmitsPerMinutePerTenant { get; set; } = 120;
}
