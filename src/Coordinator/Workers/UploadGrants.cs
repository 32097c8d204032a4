using RenderFarm.Protocol;

namespace RenderFarm.Coordinator.Workers;

/// <summary>
/// The direct uploads a worker's stream was granted and has not reported yet: a report that an image was uploaded
/// counts only for the digest granted to this stream, once. Bounded (a worker that asks and never reports cannot grow
/// it): the oldest grants go first, and a report of an evicted one is refused like an ungranted one; the worker's
/// image then stays pending and is rendered again.
/// </summary>
public sealed class UploadGrants
{
    /// <summary>Far more than a worker has in flight (a few shards of at most a few hundred images).</summary>
    public const int Capacity = 4096;

    private readonly Dictionary<(string Job, uint Index), ResultDigest> _granted = [];
    private readonly Queue<(string Job, uint Index)> _order = new();

    public int Count => _granted.Count;

    public void Grant(string jobId, ResultDigest digest)
    {
        var key = (jobId, digest.Index);
        if (!_granted.ContainsKey(key)) _order.Enqueue(key);
        _granted[key] = digest;
        while (_granted.Count > Capacity && _order.TryDequeue(out var oldest)) _granted.Remove(oldest);
    }

    /// <summary>Whether <paramref name="reported"/> is what was granted for its image; the grant is used up either way.</summary>
    public bool Redeem(string jobId, ResultDigest reported)
    {
        if (!_granted.Remove((jobId, reported.Index), out var granted)) return false;
        return granted.Sha256.Equals(reported.Sha256) && granted.SizeBytes == reported.SizeBytes;
    }
}
