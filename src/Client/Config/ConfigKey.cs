namespace RenderFarm.Client.Config;

/// <summary>
/// One setting the <c>farm</c> tool resolves as flag &gt; environment &gt; config file &gt; built-in default.
/// <see cref="Normalize"/> turns any spelling of a value into its canonical text or throws a
/// <see cref="FormatException"/> whose message is the reason alone (the caller says where the value came from).
/// </summary>
public sealed record ConfigKey(
    string Name,
    string Flag,
    IReadOnlyList<string> EnvironmentVariables,
    string? Default,
    string Description,
    Func<string, string> Normalize,
    bool IsNumber = false,
    bool IsSecret = false);
