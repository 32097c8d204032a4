namespace RenderFarm.Coordinator.Storage;

/// <summary>A time-limited download URL for a stored image.</summary>
public sealed record PresignedImage(Uri Url, long SizeBytes, DateTimeOffset ExpiresAt);
