using System.Security.Cryptography;
using System.Text;
using Google.Protobuf;
using RenderFarm.Protocol;
using StackExchange.Redis;

namespace RenderFarm.FarmState.TaskStreams;

/// <summary>
/// How a <see cref="Shard"/> is laid out on a task stream. An entry is a token (<see cref="TokenField"/>): one queued
/// shard, bound to a shard of the fair queue when a worker reads it (<see cref="TaskStreamScripts.Claim"/>). Entries
/// queued before the fair queue existed carry their shard themselves (<see cref="PayloadField"/>: the protobuf bytes)
/// and its variant (<see cref="VariantField"/>); they are still read. A shard's <see cref="Variant"/> is what workers
/// look at before they claim it, to prefer the ones they hold loaded.
/// </summary>
public static class ShardEntry
{
    public const string PayloadField = "shard";

    /// <summary>The one field of a token entry (its value is not read).</summary>
    public const string TokenField = "queued";

    /// <summary>The entry's routing hint: see <see cref="Variant"/>. Entries queued before it existed have none.</summary>
    public const string VariantField = "variant";

    /// <summary>Deliveries of a shard before it is dead-lettered, unless configured otherwise.</summary>
    public const int DefaultMaxAttempts = 3;

    /// <summary>The shard's attempt limit: the one it was queued with, or <paramref name="fallback"/> if it has none.</summary>
    public static int AttemptLimit(Shard shard, int fallback = DefaultMaxAttempts) =>
        shard.MaxAttempts > 0 ? (int)shard.MaxAttempts : fallback;

    public static NameValueEntry[] ToFields(Shard shard) => ToFields(shard, shard.ToByteArray());

    /// <summary>The entry of <paramref name="shard"/>, whose serialized bytes are <paramref name="payload"/>.</summary>
    public static NameValueEntry[] ToFields(Shard shard, byte[] payload) =>
        [new(PayloadField, payload), new(VariantField, Variant(shard.Params.Model, shard.LoraKey))];

    /// <summary>
    /// What a worker must hold loaded to start a shard at once: the model (<paramref name="model"/>) or, for a shard
    /// with LoRAs, the model's variant for that set — <c>MODEL|HASH</c>, 16 hex digits of the SHA-256 of its
    /// <see cref="Shard.LoraKey"/>. Model names never hold '|' (<see cref="ModelOf"/>).
    /// </summary>
    public static string Variant(string model, string loraKey) =>
        loraKey.Length == 0 ? model : $"{model}|{Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(loraKey)).AsSpan(0, 8))}";

    /// <summary>The model of a <see cref="Variant"/>.</summary>
    public static string ModelOf(string variant) => variant.Split('|', 2)[0];

    public static Shard Parse(StreamEntry entry)
    {
        var payload = entry[PayloadField];
        if (payload.IsNull)
            throw new InvalidDataException($"task entry {entry.Id} has no '{PayloadField}' field");
        return Shard.Parser.ParseFrom((byte[])payload!);
    }
}
