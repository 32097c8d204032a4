namespace RenderFarm.Coordinator.Security;

/// <summary>A stored API key: never the key itself, only its SHA-256.</summary>
public sealed record ApiKeyRecord(string Id, string Tenant, ApiKeyRole Role, string Name, long CreatedUnixMs, bool Revoked);
