namespace RenderFarm.Coordinator.Security;

/// <summary><c>Farm:Auth:Mode</c>: API keys (the default), or none at all (local development only).</summary>
public enum AuthMode { ApiKeys, Disabled }
