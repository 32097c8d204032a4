using RenderFarm.Protocol;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>An event for a watcher, with where the watcher is once it has been sent.</summary>
public readonly record struct WatchedEvent(JobEvent Event, EventCursor After);
