namespace RenderFarm.Shared.Health;

/// <summary>
/// The gRPC health services (grpc.health.v1.Health) the apps answer. Service "" aggregates every check: readiness.
/// Service "liveness" aggregates only the checks tagged <see cref="LiveTag"/>: those a restart can fix, never a
/// dependency's outage (restarting every pod because Redis is down helps nobody).
/// </summary>
public static class FarmHealth
{
    public const string ReadinessService = "";
    public const string LivenessService = "liveness";
    public const string LiveTag = "live";
}
