namespace RenderFarm.Diffusion;

/// <summary>How the images of one request share model runs, and so what their bytes depend on.</summary>
public enum ModelBatching
{
    /// <summary><see cref="Image"/> on the CPU provider, <see cref="Batch"/> on GPU providers.</summary>
    Auto,

    /// <summary>
    /// Every model run (text encoder, UNet, VAE) covers one image, so an image's bytes never depend on the other images
    /// of its request: it renders exactly as it would alone. Costs little on a CPU, where a batch barely runs faster
    /// per image than a single image; on a GPU it gives up the throughput of batching.
    /// </summary>
    Image,

    /// <summary>
    /// One run covers the whole request (CFG doubles it). The same request gives the same bytes, but the kernels a
    /// provider picks depend on the batch shape, so an image can differ slightly from itself rendered in another batch.
    /// </summary>
    Batch,
}
