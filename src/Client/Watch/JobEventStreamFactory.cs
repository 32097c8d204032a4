using RenderFarm.Protocol;

namespace RenderFarm.Client.Watch;

/// <summary>Opens the job's event stream after <c>afterEventId</c> ("" = from the start).</summary>
public delegate IAsyncEnumerable<JobEvent> JobEventStreamFactory(string jobId, string afterEventId, CancellationToken cancellationToken);
