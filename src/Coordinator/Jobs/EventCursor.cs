namespace RenderFarm.Coordinator.Jobs;

/// <summary>Where a watcher is in a job's two event streams: the last event and the last progress event it was sent.</summary>
public sealed record EventCursor(string Events, string Progress)
{
    /// <summary>A watch resumed after <paramref name="eventId"/> (an id of the events stream; "" = from the start).</summary>
    public static EventCursor After(string eventId) => new(eventId, eventId);
}
