namespace RenderFarm.ModelBuilder;

public sealed record ComponentInfo(string Folder, long Parameters, long Bytes);
