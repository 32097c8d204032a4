using System.Globalization;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>A stored image as the job records it: its sha256 and, when recorded, its size in bytes.</summary>
public sealed record StoredResult(uint Index, string Sha256, long? SizeBytes)
{
    public static StoredResult Parse(uint index, string value)
    {
        int colon = value.IndexOf(':');
        return colon < 0
            ? new StoredResult(index, value, null)
            : new StoredResult(index, value[..colon], long.Parse(value.AsSpan(colon + 1), CultureInfo.InvariantCulture));
    }
}
