using Microsoft.Extensions.Options;
using RenderFarm.Shared;
using System.Globalization;
using RenderFarm.FarmState;
using RenderFarm.FarmState.TaskStreams;

namespace RenderFarm.Coordinator.Security;

/// <summary>
/// <c>RenderFarm.Coordinator keys create|list|revoke|webhook-secret|weight</c>: manages API keys and what goes with a
/// tenant (its webhook secret, its fair-share weight) in the farm's Redis (same configuration as
/// the server: appsettings + environment, e.g. <c>Farm__Redis</c>). Revocation applies to the next call everywhere.
/// </summary>
public static class KeysCommand
{
    public const string Usage = """
        usage:
          RenderFarm.Coordinator keys create --tenant TENANT --role client|worker|admin [--name NAME]
          RenderFarm.Coordinator keys list
          RenderFarm.Coordinator keys revoke KEY_ID
          RenderFarm.Coordinator keys webhook-secret --tenant TENANT [--rotate]
          RenderFarm.Coordinator keys weight [--tenant TENANT [--set WEIGHT]]
        The key is printed once by `create`; only its SHA-256 is stored. An admin key is a client key of its
        tenant that may also manage workers (farm workers release). webhook-secret prints the secret the tenant's
        webhooks are signed with (made on first use; --rotate replaces it): give it to whoever receives them.
        weight prints a tenant's fair-share weight (every tenant's that was set, without --tenant), or sets it:
        within a priority, a tenant of weight 3 gets three shards for every one of a tenant of weight 1 while both
        have work waiting (default 1, from 0.001 to 1000; applies to work already queued from the next shard on).
        """;

    public static async Task<int> RunAsync(string[] args, IConfiguration configuration, TextWriter output, TextWriter error)
    {
        var options = new CoordinatorOptions();
        configuration.GetSection(CoordinatorOptions.Section).Bind(options);
        await using var redis = FarmRedis.Connect(options.Redis, "renderfarm-keys");
        var store = new ApiKeyStore(redis);
        string? Flag(string name) => Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;

        switch (args.ElementAtOrDefault(1))
        {
            case "create":
                var tenant = Flag("--tenant");
                if (tenant is null || !ApiKeyStore.IsValidTenant(tenant)) return Fail(error, "--tenant is required (letters, digits, '.', '_', '-'; at most 64)");
                if (!Enum.TryParse<ApiKeyRole>(Flag("--role") ?? "", ignoreCase: true, out var role)) return Fail(error, "--role must be client, worker or admin");
                var (secret, record) = await store.CreateAsync(tenant, role, Flag("--name") ?? "");
                await error.WriteLineAsync($"created {record.Role.ToString().ToLowerInvariant()} key {record.Id} for tenant {record.Tenant}; it is shown only now:");
                await output.WriteLineAsync(secret);
                return 0;
            case "list":
                await output.WriteLineAsync("ID        TENANT            ROLE    STATE    CREATED               NAME");
                foreach (var r in await store.ListAsync())
                    await output.WriteLineAsync($"{r.Id,-9} {r.Tenant,-17} {r.Role.ToString().ToLowerInvariant(),-7} {(r.Revoked ? "revoked" : "active"),-8} " +
                                                $"{DateTimeOffset.FromUnixTimeMilliseconds(r.CreatedUnixMs):yyyy-MM-dd HH:mm:ss}Z  {r.Name}");
                return 0;
            case "revoke" when args.Length >= 3:
                if (!await store.RevokeAsync(args[2])) return Fail(error, $"no key with id '{args[2]}'");
                await error.WriteLineAsync($"revoked key {args[2]}");
                return 0;
            case "webhook-secret":
                var owner = Flag("--tenant");
                if (owner is null || !ApiKeyStore.IsValidTenant(owner)) return Fail(error, "--tenant is required (letters, digits, '.', '_', '-'; at most 64)");
                var secrets = new Webhooks.WebhookSecrets(redis);
                await output.WriteLineAsync(args.Contains("--rotate") ? await secrets.RotateAsync(owner) : await secrets.GetOrCreateAsync(owner));
                return 0;
            case "weight":
                return await WeightAsync(new TenantWeights(redis), Flag("--tenant"), Flag("--set"), args.Contains("--set"), output, error);
            default:
                await error.WriteLineAsync(Usage);
                return 2;
        }
    }

    private static async Task<int> WeightAsync(TenantWeights weights, string? tenant, string? set, bool setting, TextWriter output, TextWriter error)
    {
        if (tenant is null)
        {
            if (setting) return Fail(error, "--set needs --tenant");
            foreach (var (name, weight) in (await weights.ListAsync()).OrderBy(w => w.Key, StringComparer.Ordinal))
                await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"{name} {weight}"));
            return 0;
        }
        if (!ApiKeyStore.IsValidTenant(tenant)) return Fail(error, "--tenant must be letters, digits, '.', '_', '-'; at most 64");
        if (setting)
        {
            if (!double.TryParse(set, NumberStyles.Float, CultureInfo.InvariantCulture, out var weight) || !TenantWeights.IsValid(weight))
                return Fail(error, $"--set takes a weight {TenantWeights.Range} (1 is every tenant's unless set), not '{set}'");
            await weights.SetAsync(tenant, weight);
            await error.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"tenant {tenant} now has weight {weight}"));
        }
        await output.WriteLineAsync((await weights.OfAsync(tenant)).ToString(CultureInfo.InvariantCulture));
        return 0;
    }

    private static int Fail(TextWriter error, string message)
    {
        error.WriteLine($"error: {message}");
        return 2;
    }
}
