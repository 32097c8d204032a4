namespace RenderFarm.Coordinator.Storage;

/// <summary>What a store holds for an image: its sha256 (hex) and size in bytes.</summary>
public sealed record StoredObject(string Sha256, long SizeBytes);
