using RenderFarm.Protocol;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>An event for a watcher, with where the watcher is once it has been sent.</summary>
public readonly record struct WatchedEvent(JobEvent Event, EventCursor After);

/// <summary>
/// One read of a job's two event streams: the events found, and whether the read reached the end of both (neither gave
/// a full page), so that a watcher may sleep until the next append instead of reading again to find nothing.
/// </summary>
public sealed record EventPage(IReadOnlyList<WatchedEvent> Events, bool ReachedEnd);
