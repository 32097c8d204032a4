namespace RenderFarm.Client;

/// <summary>
/// Splits a pull into <see cref="Count"/> DownloadResults streams by image index (index mod Count). The request's
/// one filter is skip_indices, so a stream's request lists every image it should not send: those already in the
/// folder, those this pull already handled, and the other partitions'. A job's indices are 0..ImageCount-1; an index
/// past that (none expected) is in no partition's skip list, so every stream sends it and the downloader takes it once.
/// The lists cost ~3 bytes an index: about 2.6 MB a request for a million-image job split 8 ways.
/// </summary>
public sealed class Partitions
{
    private readonly uint _imageCount;
    private readonly HashSet<uint> _present;

    private Partitions(uint imageCount, HashSet<uint> present, int count)
    {
        _imageCount = imageCount;
        _present = present;
        Count = count;
    }

    public int Count { get; }

    /// <summary>
    /// <paramref name="wanted"/> partitions of a job of <paramref name="imageCount"/> images (one when the count is
    /// unknown, 0), none of them for an index that cannot exist.
    /// </summary>
    public static Partitions For(uint imageCount, IEnumerable<uint> present, int wanted) =>
        new(imageCount, present.ToHashSet(), imageCount == 0 ? 1 : (int)Math.Clamp(wanted, 1, Math.Min(imageCount, int.MaxValue)));

    /// <summary>The skip_indices of <paramref name="partition"/>'s request, ascending where they are job indices.</summary>
    public IEnumerable<uint> Skip(int partition, IReadOnlySet<uint> handled)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(partition);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(partition, Count);
        for (uint index = 0; index < _imageCount; index++)
        {
            if (index % (uint)Count != partition || _present.Contains(index) || handled.Contains(index))
            {
                yield return index;
            }
        }

        foreach (var index in _present.Concat(handled).Where(i => i >= _imageCount).Distinct())
        {
            yield return index;
        }
    }
}
