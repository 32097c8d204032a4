namespace RenderFarm.Diffusion.Generation;

/// <summary>
/// The arrays one generation works in (latents, UNet input/output, text encoder states, decoded pixels, RGB rows),
/// kept from request to request. A worker renders request after request of the same few shapes (full shards and the
/// remainder); fresh arrays every time cost a page fault per 4 KiB on first touch, large-object-heap churn at 512²
/// and up, and GC pauses (bench/pipeline.md).
/// </summary>
/// <remarks>
/// An array is handed out again only for the same name and length, and its old contents are still there: every user
/// must overwrite all of it. At most <see cref="MaxRetainedBytes"/> are kept; the arrays used longest ago go first,
/// and an array larger than that is never kept. Not thread-safe: the pipeline's gate serialises generations.
/// </remarks>
internal sealed class Workspace
{
    /// <summary>Default bound on the bytes kept (256 MiB: an SD 1.5 batch of 8 at 512² needs ~40 MiB).</summary>
    public const long MaxRetainedBytes = 256L << 20;

    private readonly Store _store;
    private readonly string _scope;

    public Workspace(long maxRetainedBytes = MaxRetainedBytes) : this(new Store(maxRetainedBytes), "")
    {
    }

    private Workspace(Store store, string scope)
    {
        _store = store;
        _scope = scope;
    }

    /// <summary>
    /// A view whose names are its own: the arrays it hands out are distinct from this workspace's and from other
    /// scopes' (several model batches of one request each keep their latents), within the same retained-bytes bound.
    /// </summary>
    public Workspace Scope(int index) => index == 0 ? this : new Workspace(_store, $"{_scope}#{index}");

    private sealed class Store(long maxRetainedBytes)
    {
        public readonly long MaxRetainedBytes = maxRetainedBytes;
        public readonly Dictionary<(string Name, int Length, Type Type), (Array Array, long LastUse)> Arrays = [];
        public long Uses;
    }

    /// <summary>The float array called <paramref name="name"/> of exactly <paramref name="length"/> elements.</summary>
    public float[] Floats(string name, int length) => Get<float>(name, length);

    /// <summary>Bytes currently kept.</summary>
    public long RetainedBytes => _store.Arrays.Values.Sum(a => Bytes(a.Array));

    private T[] Get<T>(string name, int length) where T : unmanaged
    {
        var arrays = _store.Arrays;
        var key = (_scope.Length == 0 ? name : name + _scope, length, typeof(T));
        long use = ++_store.Uses;
        if (arrays.TryGetValue(key, out var kept))
        {
            arrays[key] = (kept.Array, use);
            return (T[])kept.Array;
        }
        var fresh = new T[length];
        long size = Bytes(fresh);
        if (size <= _store.MaxRetainedBytes)
        {
            long retained = RetainedBytes;
            while (retained + size > _store.MaxRetainedBytes)
            {
                var oldest = arrays.MinBy(a => a.Value.LastUse);
                retained -= Bytes(oldest.Value.Array);
                arrays.Remove(oldest.Key);
            }
            arrays[key] = (fresh, use);
        }
        return fresh;
    }

    private static long Bytes(Array array) =>
        (long)array.Length * System.Runtime.InteropServices.Marshal.SizeOf(array.GetType().GetElementType()!);
}
