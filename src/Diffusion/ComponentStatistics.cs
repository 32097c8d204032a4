namespace RenderFarm.Diffusion;

/// <summary>One ONNX component's evaluations (session runs) and the time spent in them.</summary>
public sealed record ComponentStatistics(string Component, long Runs, TimeSpan RunTime);
