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

    // Oldest first; a redeemed grant leaves both at once, so neither grows with the grants a long stream redeems.
    private readonly LinkedList<((string Job, uint Index) Key, ResultDigest Digest)> _order = new();
    private readonly Dictionary<(string Job, uint Index), LinkedListNode<((string Job, uint Index) Key, ResultDigest Digest)>> _granted = [];

    public void Grant(string jobId, ResultDigest digest)
    {
        var key = (jobId, digest.Index);
        if (_granted.TryGetValue(key, out var node))
        {
            node.Value = (key, digest); // asked again: the newer digest counts, where the first stood in line
            return;
        }
        _granted[key] = _order.AddLast((key, digest));
        if (_granted.Count > Capacity)
        {
            _granted.Remove(_order.First!.Value.Key);
            _order.RemoveFirst();
        }
    }

    /// <summary>Whether <paramref name="reported"/> is what was granted for its image; the grant is used up either way.</summary>
    public bool Redeem(string jobId, ResultDigest reported)
    {
        if (!_granted.Remove((jobId, reported.Index), out var node)) return false;
        _order.Remove(node);
        var granted = node.Value.Digest;
        return granted.Sha256.Equals(reported.Sha256) && granted.SizeBytes == reported.SizeBytes;
    }
}
