using System.Numerics.Tensors;
using Microsoft.ML.OnnxRuntime;
using RenderFarm.Diffusion.Imaging;
using RenderFarm.Diffusion.Models;
using RenderFarm.Imaging;

namespace RenderFarm.Diffusion.Generation;

/// <summary>
/// The init images of img2img/inpainting in latent space, per image of the batch: its scaled latents [C, h, w] and,
/// for inpainting, its latent-size mask [h, w] (1 = repaint) and the latents of its init image with the repaint region
/// blanked (the 9-channel UNet's extra input). An image's init image and mask are its own
/// (<see cref="ImagePrompt.InitImage"/>, <see cref="ImagePrompt.MaskImage"/>), else the request's. Each distinct
/// init image, mask and (init image, mask) pair — same bytes, by reference or by content — is decoded and
/// VAE-encoded once per request however many images share it, and each kind of encode runs as one VAE batch.
/// </summary>
internal sealed class InitImages
{
    private readonly PerImage? _latents;
    private readonly PerImage? _masks;
    private readonly PerImage? _maskedLatents;

    private InitImages(PerImage? latents, PerImage? masks, PerImage? maskedLatents)
    {
        _latents = latents;
        _masks = masks;
        _maskedLatents = maskedLatents;
    }

    /// <summary>Whether the images have masks (inpainting).</summary>
    public bool HasMask => _masks is not null;

    /// <summary>Image <paramref name="image"/>'s init latents, scaled.</summary>
    public ReadOnlySpan<float> Latents(int image) => _latents!.Value.Row(image);

    /// <summary>Image <paramref name="image"/>'s latent-size mask [h, w].</summary>
    public ReadOnlySpan<float> LatentMask(int image) => _masks!.Value.Row(image);

    /// <summary>The 9-channel UNet's extra channels of image <paramref name="image"/>: mask [1, h, w] then masked-image latents [C, h, w].</summary>
    public void WriteInpaintChannels(int image, Span<float> destination)
    {
        var mask = LatentMask(image);
        mask.CopyTo(destination);
        _maskedLatents!.Value.Row(image).CopyTo(destination[mask.Length..]);
    }

    /// <summary>Image <paramref name="image"/>'s init image: its own, else the request's.</summary>
    public static byte[]? InitImageOf(GenerationRequest request, int image) => request.Images[image].InitImage ?? request.InitImage;

    /// <summary>Image <paramref name="image"/>'s mask: its own, else the request's.</summary>
    public static byte[]? MaskImageOf(GenerationRequest request, int image) => request.Images[image].MaskImage ?? request.MaskImage;

    /// <summary>Whether the request starts from init images (a validated batch is uniform, so image 0 tells).</summary>
    public static bool Used(GenerationRequest request) => InitImageOf(request, 0) is not null;

    /// <summary>Whether the request inpaints (a validated batch is uniform, so image 0 tells).</summary>
    public static bool Masked(GenerationRequest request) => MaskImageOf(request, 0) is not null;

    /// <summary>
    /// Checks that a batch is uniform in mode: every image has an init image or none does, every image has a mask or
    /// none does, and no mask comes without its init image.
    /// </summary>
    public static void CheckUniform(GenerationRequest request)
    {
        int count = request.Images.Count;
        var withoutInit = Enumerable.Range(0, count).Where(i => InitImageOf(request, i) is null).ToArray();
        var maskedWithoutInit = withoutInit.Where(i => MaskImageOf(request, i) is not null).ToArray();
        if (maskedWithoutInit.Length > 0)
        {
            throw new ArgumentException(
                $"A mask needs the init image it applies to ({Describe(maskedWithoutInit)} a mask but no init image).", nameof(request.InitImage));
        }
        if (withoutInit.Length > 0 && withoutInit.Length < count)
        {
            throw new ArgumentException(
                $"A batch must be uniform: every image has an init image or none does ({Describe(withoutInit)} none, the others have one).", nameof(request.InitImage));
        }
        var withoutMask = Enumerable.Range(0, count).Where(i => MaskImageOf(request, i) is null).ToArray();
        if (withoutMask.Length > 0 && withoutMask.Length < count)
        {
            throw new ArgumentException(
                $"A batch must be uniform: every image has a mask or none does ({Describe(withoutMask)} none, the others have one).", nameof(request.MaskImage));
        }

        static string Describe(int[] images) =>
            (images.Length == 1 ? "image " : "images ") + string.Join(", ", images.Take(5)) + (images.Length > 5 ? $" and {images.Length - 5} more" : "") +
            (images.Length == 1 ? " has" : " have");
    }

    /// <summary>
    /// Decodes and encodes the request's init images (and masks). <paramref name="needLatents"/>: the init latents are
    /// used (img2img, the 4-channel inpaint blend, inpainting below strength 1); <paramref name="needMaskedLatents"/>:
    /// the 9-channel UNet's masked-image latents. <paramref name="oneImagePerRun"/>: each distinct image is encoded in
    /// a VAE run of its own, so its latents are what they would be if it were the only one (<see cref="ModelBatching.Image"/>).
    /// </summary>
    public static InitImages Prepare(GenerationRequest request, VaeEncoder encoder, ModelProfile profile, int latentChannels,
        bool needLatents, bool needMaskedLatents, bool oneImagePerRun, long maxPixels, RunOptions runOptions, Action? encoded = null)
    {
        int width = request.Width, height = request.Height, batch = request.Images.Count;
        int pixels = 3 * width * height, plane = width * height;
        int latentWidth = width / profile.VaeScaleFactor, latentHeight = height / profile.VaeScaleFactor, latentPlane = latentWidth * latentHeight;

        var inits = new DistinctImages(request, InitImageOf, request.InitImage, nameof(request.InitImage), "init image");
        var initPixels = new float[inits.Count * pixels];
        for (int k = 0; k < inits.Count; k++)
        {
            var image = LanczosResize.ToPlanar(inits.Decode(k, grey: false, maxPixels), width, height);
            ImageTensor.ToSigned(image);
            image.CopyTo(initPixels, k * pixels);
        }
        var latents = needLatents ? new PerImage(Encode(initPixels, inits.Count), inits.Of, latentChannels * latentPlane) : (PerImage?)null;
        if (!Masked(request))
        {
            return new InitImages(latents, null, null);
        }

        var masks = new DistinctImages(request, MaskImageOf, request.MaskImage, nameof(request.MaskImage), "mask");
        var fullMasks = new float[masks.Count * plane];
        var latentMasks = new float[masks.Count * latentPlane];
        for (int k = 0; k < masks.Count; k++)
        {
            // As diffusers' mask processor: grey, resized like the image (Lanczos), then binarised.
            var mask = LanczosResize.ToPlanar(masks.Decode(k, grey: true, maxPixels), width, height);
            ImageTensor.Binarise(mask);
            mask.CopyTo(fullMasks, k * plane);
            ImageTensor.Downsample(mask, width, height, latentWidth, latentHeight).CopyTo(latentMasks, k * latentPlane);
        }
        PerImage? maskedLatents = null;
        if (needMaskedLatents)
        {
            // masked_image = image · (mask < 0.5): the repaint region becomes 0 (mid grey); one per distinct (image, mask) pair.
            var pairs = new Dictionary<(int Init, int Mask), int>();
            var pairOf = new int[batch];
            for (int i = 0; i < batch; i++)
            {
                var key = (inits.Of[i], masks.Of[i]);
                if (!pairs.TryGetValue(key, out pairOf[i]))
                {
                    pairs.Add(key, pairOf[i] = pairs.Count);
                }
            }
            var maskedPixels = new float[pairs.Count * pixels];
            foreach (var ((init, mask), k) in pairs)
            {
                var repaint = fullMasks.AsSpan(mask * plane, plane);
                for (int c = 0; c < 3; c++)
                    for (int p = 0; p < plane; p++)
                        maskedPixels[k * pixels + c * plane + p] = initPixels[init * pixels + c * plane + p] * (1f - repaint[p]);
            }
            maskedLatents = new PerImage(Encode(maskedPixels, pairs.Count), pairOf, latentChannels * latentPlane);
        }
        return new InitImages(latents, new PerImage(latentMasks, masks.Of, latentPlane), maskedLatents);

        float[] Encode(float[] images, int count) => EncodeLatents(images, count, height, width, encoder, profile, latentChannels, oneImagePerRun, runOptions, encoded);
    }

    /// <summary>
    /// Init latents given as they are (hires fix: the first pass's result, upscaled): [count, C, h, w], scaled, image
    /// i's in row i.
    /// </summary>
    public static InitImages FromLatents(float[] latents, int count) =>
        new(new PerImage(latents, Enumerable.Range(0, count).ToArray(), latents.Length / count), null, null);

    /// <summary>
    /// VAE-encodes <paramref name="count"/> images [3, H, W] in [−1, 1] into scaled latents [count, C, h, w]: one run, or
    /// one per image (<paramref name="oneImagePerRun"/>, so each is what it would be alone). <paramref name="encoded"/> is
    /// told after each run.
    /// </summary>
    public static float[] EncodeLatents(float[] images, int count, int height, int width, VaeEncoder encoder, ModelProfile profile, int latentChannels,
        bool oneImagePerRun, RunOptions runOptions, Action? encoded = null)
    {
        int pixels = 3 * width * height;
        float[] latents;
        if (oneImagePerRun && count > 1)
        {
            latents = [];
            for (int k = 0; k < count; k++)
            {
                var one = encoder.Encode(images.AsSpan(k * pixels, pixels), 1, height, width, latentChannels, runOptions);
                if (k == 0) latents = new float[count * one.Length];
                one.CopyTo(latents, k * one.Length);
                encoded?.Invoke();
            }
        }
        else
        {
            latents = encoder.Encode(images, count, height, width, latentChannels, runOptions);
            encoded?.Invoke();
        }
        TensorPrimitives.Multiply(latents, profile.VaeScalingFactor, latents);
        return latents;
    }

    /// <summary>Distinct rows of <see cref="Values"/> and which row each image uses.</summary>
    private readonly record struct PerImage(float[] Values, int[] Of, int Per)
    {
        public ReadOnlySpan<float> Row(int image) => Values.AsSpan(Of[image] * Per, Per);
    }

    /// <summary>
    /// The distinct byte arrays of a request's images (init images or masks), in order of first use: the same
    /// reference or the same content is one entry. <see cref="Of"/> maps each image to its entry.
    /// </summary>
    private sealed class DistinctImages
    {
        private readonly List<(byte[] Bytes, string Subject)> _items = [];
        private readonly string _parameter;

        public DistinctImages(GenerationRequest request, Func<GenerationRequest, int, byte[]?> bytesOf, byte[]? requestDefault, string parameter, string what)
        {
            _parameter = parameter;
            var byReference = new Dictionary<byte[], int>(ReferenceEqualityComparer.Instance);
            var byContent = new Dictionary<byte[], int>(ContentComparer.Instance);
            Of = new int[request.Images.Count];
            for (int i = 0; i < Of.Length; i++)
            {
                var bytes = bytesOf(request, i)!;
                if (!byReference.TryGetValue(bytes, out int k))
                {
                    if (!byContent.TryGetValue(bytes, out k))
                    {
                        k = _items.Count;
                        byContent.Add(bytes, k);
                        _items.Add((bytes, ReferenceEquals(bytes, requestDefault) ? $"The {what}" : $"The {what} of image {i}"));
                    }
                    byReference.Add(bytes, k);
                }
                Of[i] = k;
            }
        }

        public int Count => _items.Count;

        public int[] Of { get; }

        public DecodedImage Decode(int k, bool grey, long maxPixels) => ImageDecoder.Decode(_items[k].Bytes, grey, maxPixels, _parameter, _items[k].Subject);
    }

    private sealed class ContentComparer : IEqualityComparer<byte[]>
    {
        public static readonly ContentComparer Instance = new();

        public bool Equals(byte[]? x, byte[]? y) => ReferenceEquals(x, y) || (x is not null && y is not null && x.AsSpan().SequenceEqual(y));

        public int GetHashCode(byte[] bytes)
        {
            var hash = new HashCode();
            hash.AddBytes(bytes);
            return hash.ToHashCode();
        }
    }
}
