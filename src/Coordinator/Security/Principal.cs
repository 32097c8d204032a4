namespace RenderFarm.Coordinator.Security;

/// <summary>Who a credential belongs to: a tenant (whose jobs it sees) and a role (which service it may call).</summary>
public sealed record Principal(string KeyId, string Tenant, ApiKeyRole Role);
