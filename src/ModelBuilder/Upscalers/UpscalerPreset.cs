using RenderFarm.ModelBuilder.Components;

namespace RenderFarm.ModelBuilder.Upscalers;

/// <summary>A named upscaler the builder writes: an RRDBNet of the given sizes.</summary>
public sealed record UpscalerPreset(string Name, string Description, RrdbNetConfig Net, bool FullSize = false);
