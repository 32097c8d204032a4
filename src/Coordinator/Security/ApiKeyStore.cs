using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using RenderFarm.FarmState;
using StackExchange.Redis;

namespace RenderFarm.Coordinator.Security;

/// <summary>
/// API keys in Redis, hashed: <c>auth:keys</c> maps sha256(key) → record and <c>auth:key-ids</c> maps id → sha256, so a
/// key can be looked up per call (revocation takes effect on the next call, no restart) and revoked by its id.
/// </summary>
public sealed class ApiKeyStore(IConnectionMultiplexer redis)
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    /// <summary>Creates a key; the returned secret is shown once and never stored.</summary>
    public async Task<(string Secret, ApiKeyRecord Record)> CreateAsync(string tenant, ApiKeyRole role, string name)
    {
        if (!IsValidTenant(tenant))
            throw new ArgumentException("tenant must be 1–64 letters, digits, '.', '_' or '-'", nameof(tenant));
        var id = RandomToken(8);
        var secret = $"rf_{role switch { ApiKeyRole.Worker => "w", ApiKeyRole.Admin => "a", _ => "c" }}_{RandomToken(32)}";
        var record = new ApiKeyRecord(id, tenant, role, name, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), Revoked: false);
        var hash = Hash(secret);
        var db = redis.GetDatabase();
        await db.HashSetAsync(FarmKeys.ApiKeys, hash, JsonSerializer.Serialize(record, Json));
        await db.HashSetAsync(FarmKeys.ApiKeyIds, id, hash);
        return (secret, record);
    }

    public async Task<Principal?> AuthenticateAsync(string secret)
    {
        if (secret.Length is 0 or > 200) return null;
        var value = await redis.GetDatabase().HashGetAsync(FarmKeys.ApiKeys, Hash(secret));
        if (value.IsNull) return null;
        var record = JsonSerializer.Deserialize<ApiKeyRecord>((string)value!, Json)!;
        return record.Revoked ? null : new Principal(record.Id, record.Tenant, record.Role);
    }

    public async Task<IReadOnlyList<ApiKeyRecord>> ListAsync() =>
        (await redis.GetDatabase().HashValuesAsync(FarmKeys.ApiKeys))
            .Select(v => JsonSerializer.Deserialize<ApiKeyRecord>((string)v!, Json)!)
            .OrderBy(r => r.CreatedUnixMs).ToList();

    /// <summary>Revokes a key by id; false if there is no such key.</summary>
    public async Task<bool> RevokeAsync(string id)
    {
        var db = redis.GetDatabase();
        var hash = await db.HashGetAsync(FarmKeys.ApiKeyIds, id);
        if (hash.IsNull) return false;
        var value = await db.HashGetAsync(FarmKeys.ApiKeys, (string)hash!);
        if (value.IsNull) return false;
        var record = JsonSerializer.Deserialize<ApiKeyRecord>((string)value!, Json)! with { Revoked = true };
        await db.HashSetAsync(FarmKeys.ApiKeys, (string)hash!, JsonSerializer.Serialize(record, Json));
        // Streams opened with the key end now rather than at the coordinators' next check.
        await redis.GetSubscriber().PublishAsync(RedisChannel.Literal(FarmKeys.ApiKeyRevokedChannel), id);
        return true;
    }

    /// <summary>Which of <paramref name="ids"/> are revoked or gone (two pipelined reads however many there are).</summary>
    public async Task<IReadOnlyList<string>> RevokedAmongAsync(IReadOnlyList<string> ids)
    {
        if (ids.Count == 0) return [];
        var db = redis.GetDatabase();
        var hashes = await db.HashGetAsync(FarmKeys.ApiKeyIds, [.. ids.Select(i => (RedisValue)i)]);
        var present = hashes.Select((h, i) => (h, i)).Where(x => !x.h.IsNull).ToList();
        var values = present.Count == 0 ? [] : await db.HashGetAsync(FarmKeys.ApiKeys, [.. present.Select(x => x.h)]);
        var active = new HashSet<string>(StringComparer.Ordinal);
        for (var n = 0; n < present.Count; n++)
            if (!values[n].IsNull && !JsonSerializer.Deserialize<ApiKeyRecord>((string)values[n]!, Json)!.Revoked)
                active.Add(ids[present[n].i]);
        return ids.Where(id => !active.Contains(id)).ToList();
    }

    public static bool IsValidTenant(string tenant) =>
        tenant.Length is > 0 and <= 64 && tenant.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-');

    private static string Hash(string secret) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(secret)));

    private static string RandomToken(int length)
    {
        const string alphabet = "abcdefghijklmnopqrstuvwxyz234567";
        var bytes = RandomNumberGenerator.GetBytes(length);
        return string.Create(length, bytes, static (chars, b) => { for (var i = 0; i < chars.Length; i++) chars[i] = alphabet[b[i] & 31]; });
    }
}
