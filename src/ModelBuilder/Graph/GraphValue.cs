namespace RenderFarm.ModelBuilder.Graph;

/// <summary>A graph input or output signature.</summary>
public sealed record GraphValue(string Name, ElementType Type, IReadOnlyList<Dim> Dims);
