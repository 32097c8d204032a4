using Google.Protobuf;
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

    /// <summary>Earlier digests of an image asked for again that are remembered with its grant (see <see cref="Redeem(string, ResultDigest, out IReadOnlyList{ByteString})"/>).</summary>
    public const int EarlierKept = 4;

    // Oldest first; a redeemed grant leaves both at once, so neither grows with the grants a long stream redeems.
    private readonly LinkedList<Entry> _order = new();
    private readonly Dictionary<(string Job, uint Index), LinkedListNode<Entry>> _granted = [];

    /// <param name="Earlier">The other sha256s this stream was granted for the image before, distinct, newest first (null: none).</param>
    private sealed record Entry((string Job, uint Index) Key, ResultDigest Digest, List<ByteString>? Earlier);

    public void Grant(string jobId, ResultDigest digest)
    {
        var key = (jobId, digest.Index);
        if (_granted.TryGetValue(key, out var node))
        {
            // Asked again: the newer digest counts, where the first stood in line. The older one may have been PUT
            // already, so it is remembered as this stream's too: each distinct digest once, so that asking again for
            // the same bytes never pushes an earlier, other one out of the few kept.
            var earlier = node.Value.Earlier ?? [];
            earlier.Remove(digest.Sha256);
            if (!node.Value.Digest.Sha256.Equals(digest.Sha256)) earlier.Insert(0, node.Value.Digest.Sha256);
            if (earlier.Count > EarlierKept) earlier.RemoveAt(earlier.Count - 1);
            node.Value = node.Value with { Digest = digest, Earlier = earlier };
            return;
        }
        _granted[key] = _order.AddLast(new Entry(key, digest, null));
        if (_granted.Count > Capacity)
        {
            _granted.Remove(_order.First!.Value.Key);
            _order.RemoveFirst();
        }
    }

    /// <summary>
    /// Every sha256 this stream was granted for the image and has not reported, as <see cref="Redeem(string, ResultDigest, out IReadOnlyList{ByteString})"/>
    /// names them, without using the grant up; empty when none. For an image the worker sends on its stream instead.
    /// </summary>
    public IReadOnlyList<ByteString> GrantedFor(string jobId, uint index) =>
        _granted.TryGetValue((jobId, index), out var node) ? [node.Value.Digest.Sha256, .. node.Value.Earlier ?? []] : [];

    /// <summary>Whether <paramref name="reported"/> is what was granted for its image; the grant is used up either way.</summary>
    public bool Redeem(string jobId, ResultDigest reported) => Redeem(jobId, reported, out _);

    /// <inheritdoc cref="Redeem(string, ResultDigest)"/>
    /// <param name="granted">
    /// Every sha256 this stream was granted for the image and has not reported (the last first, then up to
    /// <see cref="EarlierKept"/> other ones it asked for before, each once); empty when none. Whatever an upload stored under the image with
    /// one of them is this worker's doing.
    /// </param>
    public bool Redeem(string jobId, ResultDigest reported, out IReadOnlyList<ByteString> granted)
    {
        if (!_granted.Remove((jobId, reported.Index), out var node))
        {
            granted = [];
            return false;
        }
        _order.Remove(node);
        var entry = node.Value;
        granted = [entry.Digest.Sha256, .. entry.Earlier ?? []];
        return entry.Digest.Sha256.Equals(reported.Sha256) && entry.Digest.SizeBytes == reported.SizeBytes;
    }
}
