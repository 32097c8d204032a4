using RenderFarm.FarmState.TaskStreams;
using RenderFarm.Protocol;

namespace RenderFarm.Coordinator.Diagnostics;

/// <summary>The farm-wide gauges at one moment (see <see cref="FarmGaugeSampler"/>).</summary>
public sealed record FarmGauges(IReadOnlyList<TaskStreamStats> Streams, IReadOnlyDictionary<string, long> WorkersByState, IReadOnlyList<WorkerInfo> Workers)
{
    public static readonly FarmGauges Empty = new([], new Dictionary<string, long>(), []);
}
