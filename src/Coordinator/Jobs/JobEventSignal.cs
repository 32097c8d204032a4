using StackExchange.Redis;
using RenderFarm.FarmState;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// Wakes this coordinator's watchers when any coordinator appends to a job's event stream: every append is followed
/// by a PUBLISH of the stream's key on <see cref="FarmKeys.JobEventsChannel"/> (from the Lua scripts and
/// <see cref="JobEventLog"/>).
/// </summary>
public sealed class JobEventSignal(IConnectionMultiplexer redis) : ChannelSignal(redis, FarmKeys.JobEventsChannel)
{
    /// <summary>A task that completes at the next event of the job (shared by every watcher of the job here).</summary>
    public Task<Task> NextAsync(string jobId) => NextPublishAsync(FarmKeys.JobEvents(jobId));
}
