using RenderFarm.Diffusion;

namespace RenderFarm.Worker;

/// <summary>
/// A batch whose device work is done (<see cref="IShardRenderer.RenderOnDeviceAsync"/>): the device is free for the
/// next batch, and what is left — encoding the PNGs — is host work that can overlap it.
/// </summary>
public sealed class RenderedBatch(int count, Func<IReadOnlyList<GeneratedImage>> encode, IDisposable? resources = null) : IDisposable
{
    /// <summary>A batch rendered to the end already (a renderer that does not split device and host work).</summary>
    public static RenderedBatch Encoded(IReadOnlyList<GeneratedImage> images) => new(images.Count, () => images);

    public int Count => count;

    /// <summary>The batch's PNGs, in the request's order; call once.</summary>
    public IReadOnlyList<GeneratedImage> EncodePngs()
    {
        try { return encode(); }
        finally { Dispose(); }
    }

    public void Dispose() => resources?.Dispose();
}
