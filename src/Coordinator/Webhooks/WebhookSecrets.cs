using System.Security.Cryptography;
using RenderFarm.FarmState;
using StackExchange.Redis;

namespace RenderFarm.Coordinator.Webhooks;

/// <summary>
/// Each tenant's webhook signing secret (<see cref="FarmKeys.WebhookSecrets"/>): made on the tenant's first job with a
/// webhook, shown and rotated by the operator with <c>RenderFarm.Coordinator keys webhook-secret</c>.
/// </summary>
public sealed class WebhookSecrets(IConnectionMultiplexer redis)
{
    public async Task<string> GetOrCreateAsync(string tenant)
    {
        var db = redis.GetDatabase();
        await db.HashSetAsync(FarmKeys.WebhookSecrets, tenant, NewSecret(), When.NotExists);
        return (string)(await db.HashGetAsync(FarmKeys.WebhookSecrets, tenant))!;
    }

    /// <summary>Replaces the tenant's secret; events signed after this use the new one.</summary>
    public async Task<string> RotateAsync(string tenant)
    {
        var secret = NewSecret();
        await redis.GetDatabase().HashSetAsync(FarmKeys.WebhookSecrets, tenant, secret);
        return secret;
    }

    private static string NewSecret() => "whsec_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));

    /// <summary>The signature header's value for <paramref name="body"/>: <c>sha256=</c> and the HMAC-SHA256 in hex.</summary>
    public static string Sign(string secret, ReadOnlySpan<byte> body) =>
        "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(System.Text.Encoding.UTF8.GetBytes(secret), body));
}
