using RenderFarm.Protocol;

namespace RenderFarm.FarmState.TaskStreams;

/// <summary>How one task stream stands (see <see cref="ShardQueue.StatsAsync"/>).</summary>
/// <param name="Waiting">Shards no worker holds: never delivered, or handed back for a retry.</param>
/// <param name="InFlight">Shards a worker holds (pending under it).</param>
/// <param name="OldestWaitingSeconds">Age of the oldest never-delivered shard; 0 when there is none.</param>
public sealed record TaskStreamStats(string Model, Priority Priority, long Waiting, long InFlight, double OldestWaitingSeconds);
