using Google.Protobuf;
using RenderFarm.Protocol;
using StackExchange.Redis;

namespace RenderFarm.FarmState.TaskStreams;

/// <summary>How a <see cref="Shard"/> is laid out as a task-stream entry: one field holding the protobuf bytes.</summary>
public static class ShardEntry
{
    public const string PayloadField = "shard";

    /// <summary>Deliveries of a shard before it is dead-lettered, unless configured otherwise.</summary>
    public const int DefaultMaxAttempts = 3;

    /// <summary>The shard's attempt limit: the one it was queued with, or <paramref name="fallback"/> if it has none.</summary>
    public static int AttemptLimit(Shard shard, int fallback = DefaultMaxAttempts) =>
        shard.MaxAttempts > 0 ? (int)shard.MaxAttempts : fallback;

    public static NameValueEntry[] ToFields(Shard shard) => [new(PayloadField, shard.ToByteArray())];

    public static Shard Parse(StreamEntry entry)
    {
        var payload = entry[PayloadField];
        if (payload.IsNull)
            throw new InvalidDataException($"task entry {entry.Id} has no '{PayloadField}' field");
        return Shard.Parser.ParseFrom((byte[])payload!);
    }
}
