namespace RenderFarm.FarmState.TaskStreams;

/// <summary>
/// Whose shards are being queued, as the fair queue orders them: the job, its tenant (tenants take turns) and its
/// place among the tenant's jobs (<paramref name="Order"/>: its submission time in ms; the oldest goes first).
/// </summary>
public sealed record QueuedJob(string JobId, string Tenant, long Order);
