using RenderFarm.Coordinator.Jobs;
using RenderFarm.FarmState;
using StackExchange.Redis;

namespace RenderFarm.Coordinator.Previews;

/// <summary>
/// Wakes this coordinator's preview watchers when any coordinator stores a preview of their job (the store script
/// publishes the job's previews key on <see cref="FarmKeys.JobPreviewsChannel"/>). Subscribed only once someone here
/// watches previews.
/// </summary>
public sealed class PreviewSignal(IConnectionMultiplexer redis) : ChannelSignal(redis, FarmKeys.JobPreviewsChannel)
{
    public Task<Task> NextAsync(string jobId) => NextPublishAsync(FarmKeys.JobPreviews(jobId));
}
