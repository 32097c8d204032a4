using RenderFarm.Protocol;

namespace RenderFarm.Client.Cli;

/// <summary>How priorities are spelled on the command line (<c>farm submit --priority</c>, <c>farm priority</c>).</summary>
public static class PriorityNames
{
    public static readonly string[] All = ["high", "normal", "low"];

    /// <summary>The priority a name stands for (anything else: normal; the parser accepts only <see cref="All"/>).</summary>
    public static Priority Parse(string? name) => name switch { "high" => Priority.High, "low" => Priority.Low, _ => Priority.Normal };
}
