using RenderFarm.Protocol;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>A page of a tenant's jobs, newest first; <see cref="Next"/> is where the following page starts (null at the end).</summary>
public sealed record JobListPage(IReadOnlyList<JobStatus> Jobs, JobPageToken? Next, long TotalJobs);
