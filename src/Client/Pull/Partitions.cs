using RenderFarm.Protocol;

namespace RenderFarm.Client.Pull;

/// <summary>
/// Splits a pull into <see cref="Count"/> DownloadResults streams by image index (index mod Count). The coordinator
/// filters by partition itself (<see cref="Request"/>: partition_count/partition, and skip_indices only for what this
/// pull already has of the partition). A coordinator from before partitions ignores those fields, so for it a
/// stream's request lists every image it should not send (<see cref="LegacyRequest"/>): those already in the folder,
/// those this pull already handled, and the other partitions'. A job's indices are 0..ImageCount-1; an index past
/// that (none expected) is in no partition's legacy skip list, so every legacy stream sends it and the downloader
/// takes it once. Legacy lists cost ~3 bytes an index: about 2.6 MB a request for a million-image job split 8 ways.
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

    /// <summary><paramref name="partition"/>'s request: the coordinator keeps to the partition, the skip list to what is had.</summary>
    public DownloadResultsRequest Request(string jobId, int partition, IReadOnlySet<uint> handled, bool presignedUrls)
    {
        CheckPartition(partition);
        var request = new DownloadResultsRequest { JobId = jobId, PresignedUrls = presignedUrls };
        if (Count == 1)
        {
            request.SkipIndices.AddRange(_present.Concat(handled).Distinct().Order());
            return request;
        }
        request.PartitionCount = (uint)Count;
        request.Partition = (uint)partition;
        request.SkipIndices.AddRange(_present.Concat(handled).Where(i => i % (uint)Count == partition).Distinct().Order());
        return request;
    }

    /// <summary>The same request for a coordinator that does not filter by partition: every other index skipped.</summary>
    public DownloadResultsRequest LegacyRequest(string jobId, int partition, IReadOnlySet<uint> handled, bool presignedUrls)
    {
        var request = new DownloadResultsRequest { JobId = jobId, PresignedUrls = presignedUrls };
        request.SkipIndices.AddRange(Skip(partition, handled));
        return request;
    }

    private void CheckPartition(int partition)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(partition);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(partition, Count);
    }

    /// <summary>The legacy skip_indices of <paramref name="partition"/>'s request, ascending where they are job indices.</summary>
    public IEnumerable<uint> Skip(int partition, IReadOnlySet<uint> handled)
    {
        CheckPartition(partition);
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
