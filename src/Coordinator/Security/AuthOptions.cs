namespace RenderFarm.Coordinator.Security;

/// <summary><c>Farm:Auth</c>. Authentication is on unless switched off by name, for local development only.</summary>
public sealed class AuthOptions
{
    public const string Section = "Farm:Auth";

    /// <summary><c>ApiKeys</c> (default): every client and worker call needs a key. <c>Disabled</c>: nobody is checked.</summary>
    public AuthMode Mode { get; set; } = AuthMode.ApiKeys;
}
