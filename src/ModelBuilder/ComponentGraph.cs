using RenderFarm.ModelBuilder.Graph;

namespace RenderFarm.ModelBuilder;

/// <summary>A component graph and the folder it goes to.</summary>
public sealed record ComponentGraph(string Folder, GraphBuilder Graph);
