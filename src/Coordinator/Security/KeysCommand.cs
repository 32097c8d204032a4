using Microsoft.Extensions.Options;
using RenderFarm.Shared;
using RenderFarm.FarmState;

namespace RenderFarm.Coordinator.Security;

/// <summary>
/// <c>RenderFarm.Coordinator keys create|list|revoke</c>: manages API keys in the farm's Redis (same configuration as
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
        The key is printed once by `create`; only its SHA-256 is stored. An admin key is a client key of its
        tenant that may also manage workers (farm workers release). webhook-secret prints the secret the tenant's
        webhooks are signed with (made on first use; --rotate replaces it): give it to whoever receives them.
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
            default:
                await error.WriteLineAsync(Usage);
                return 2;
        }
    }

    private static int Fail(TextWriter error, string message)
    {
        error.WriteLine($"error: {message}");
        return 2;
    }
}
