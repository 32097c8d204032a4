using Google.Protobuf;
using RenderFarm.Protocol;
using StackExchange.Redis;

namespace RenderFarm.FarmState.TaskStreams;

/// <summary>
/// How a <see cref="Shard"/> is laid out on a task stream. An entry is a token (<see cref="TokenField"/>): one queued
/// shard, bound to a shard of the fair queue when a worker reads it (<see cref="TaskStreamScripts.Claim"/>). Entries
/// queued before the fair queue existed carry their shard themselves (<see cref="PayloadField"/>: the protobuf bytes);
/// they are still read.
/// </summary>
public static class ShardEntry
{
    public const string PayloadField = "shard";

    /// <summary>The one field of a token entry (its value is not read).</summary>
    public const string TokenField = "queued";

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
