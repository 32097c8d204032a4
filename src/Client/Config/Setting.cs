namespace RenderFarm.Client.Config;

/// <summary>A resolved setting: its canonical value (null = unset) and where it came from.</summary>
public readonly record struct Setting(ConfigKey Key, string? Value, string Source)
{
    /// <summary>The value as <c>farm config show</c> prints it: secrets masked, unset shown as "-".</summary>
    public string Display => Value is null ? "-" : Key.IsSecret ? ConfigKeys.Mask(Value) : Value;
}
