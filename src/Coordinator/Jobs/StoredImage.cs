namespace RenderFarm.Coordinator.Jobs;

/// <summary>A stored image to record: its index, sha256, size and the worker's device time for it (its cost).</summary>
public readonly record struct StoredImage(uint Index, string Sha256, long SizeBytes, double RenderSeconds);
