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

    /// <summary>
    /// The base stage of a base + refiner render (<see cref="GenerationRequest.DenoisingEnd"/>): each image's latents
    /// [C, h, w] in its <see cref="GeneratedImage.Png"/> slot, as <see cref="Shared.RefinerMessages.ToBytes"/> lays them
    /// out — what <see cref="ShardCompletion"/> sends as the image's latents.
    /// </summary>
    public static RenderedBatch Latents(GenerationRequest request, float[] latents)
    {
        var count = request.Images.Count;
        var per = latents.Length / Math.Max(1, count);
        return new(count, () => [.. request.Images.Select((image, i) => new GeneratedImage(image, Shared.RefinerMessages.ToBytes(latents.AsSpan(i * per, per))))]);
    }

    public int Count => count;

    /// <summary>The batch's PNGs, in the request's order; call once.</summary>
    public IReadOnlyList<GeneratedImage> EncodePngs()
    {
        try { return encode(); }
        finally { Dispose(); }
    }

    public void Dispose() => resources?.Dispose();
}
