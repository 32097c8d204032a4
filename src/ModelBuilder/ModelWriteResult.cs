namespace RenderFarm.ModelBuilder;

public sealed record ModelWriteResult(string Directory, IReadOnlyList<ComponentInfo> Components);
