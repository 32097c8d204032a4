namespace RenderFarm.Diffusion.Upscaling;

/// <summary>
/// What one upscaler has done since it was loaded (<see cref="UpscalerLibrary.Statistics"/>), the run that measured its
/// scale included.
/// </summary>
/// <param name="Upscaler">The upscaler's name.</param>
/// <param name="Runs">Model evaluations: one per tile.</param>
/// <param name="RunTime">Time spent in them.</param>
/// <param name="WidestInput">The widest input the model was given, in pixels: with tiles, at most the tile size.</param>
/// <param name="TallestInput">The tallest input the model was given, in pixels.</param>
public sealed record UpscalerStatistics(string Upscaler, long Runs, TimeSpan RunTime, int WidestInput, int TallestInput);
