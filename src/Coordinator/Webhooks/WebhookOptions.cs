using System.ComponentModel.DataAnnotations;

namespace RenderFarm.Coordinator.Webhooks;

/// <summary>How job webhooks are delivered (<c>Farm:Webhooks</c>).</summary>
public sealed class WebhookOptions
{
    public const string Section = "Farm:Webhooks";

    /// <summary>
    /// Allow webhook targets in loopback, link-local and private ranges (and names that resolve there). Off by default:
    /// a job's URL must not make the coordinator call into the network it runs in (SSRF).
    /// </summary>
    public bool AllowPrivateTargets { get; set; }

    /// <summary>How often the outbox is looked at for due events, in milliseconds.</summary>
    [Range(50, 60_000)] public int PollMilliseconds { get; set; } = 1_000;

    /// <summary>Wait before the first redelivery, in milliseconds; it doubles with each failure up to <see cref="MaxBackoffSeconds"/>.</summary>
    [Range(10, 3_600_000)] public int FirstBackoffMilliseconds { get; set; } = 2_000;

    [Range(1, 86_400)] public int MaxBackoffSeconds { get; set; } = 300;

    /// <summary>An event not delivered this long after its first attempt is given up (logged, and shown by farm status).</summary>
    [Range(1, 7 * 86_400)] public int GiveUpAfterSeconds { get; set; } = 3_600;

    /// <summary>
    /// How long a job with a webhook that has not ended waits in the outbox before it is looked at (again), in seconds.
    /// A job's end makes its event due at once; this only bounds the wait when the coordinator that ended it stopped
    /// before saying so, and keeps unfinished jobs out of the due part of the outbox.
    /// </summary>
    [Range(1, 86_400)] public int RecheckSeconds { get; set; } = 60;

    /// <summary>One delivery attempt's time limit, connection included.</summary>
    [Range(1, 300)] public int TimeoutSeconds { get; set; } = 10;
}
