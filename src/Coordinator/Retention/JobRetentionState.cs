namespace RenderFarm.Coordinator.Retention;

/// <summary>What retention needs to know of a job (see <see cref="Jobs.JobRepository.GetRetentionStateAsync"/>).</summary>
/// <param name="Exists">It still has records.</param>
/// <param name="FinishedMs">When it finished (ms); null while it has not (or was re-opened by a retry).</param>
/// <param name="HasInputs">A failed job that still keeps init images or masks for a retry.</param>
public sealed record JobRetentionState(bool Exists, string Tenant, long? FinishedMs, bool Failed, bool HasInputs, bool ResultsExpired);
