using Microsoft.ML.OnnxRuntime;
using RenderFarm.Diffusion.Imaging;
using RenderFarm.Diffusion.Models;

namespace RenderFarm.Diffusion.Generation;

/// <summary>
/// The init image of img2img/inpainting in latent space: its scaled latents [C, h, w] and, for inpainting, the
/// latent-size mask [h, w] (1 = repaint) and the latents of the image with the repaint region blanked (the
/// 9-channel UNet's extra input). One per request: every image of the batch starts from it.
/// </summary>
internal sealed record InitImage(float[] Latents, float[]? LatentMask, float[]? MaskedLatents)
{
    public static InitImage Prepare(GenerationRequest request, VaeEncoder encoder, ModelProfile profile, int latentChannels, bool needMaskedLatents, long maxPixels, RunOptions runOptions)
    {
        int width = request.Width, height = request.Height;
        var image = ImageTensor.ResizeToPlanar(ImageDecoder.Decode(request.InitImage, grey: false, maxPixels, nameof(request.InitImage)), width, height);
        ImageTensor.ToSigned(image);
        var latents = Encode(image);
        if (request.MaskImage is null)
        {
            return new InitImage(latents, null, null);
        }
        var mask = ImageTensor.ResizeToPlanar(ImageDecoder.Decode(request.MaskImage, grey: true, maxPixels, nameof(request.MaskImage)), width, height);
        ImageTensor.Binarise(mask);
        var latentMask = ImageTensor.Downsample(mask, width, height, width / profile.VaeScaleFactor, height / profile.VaeScaleFactor);
        float[]? masked = null;
        if (needMaskedLatents)
        {
            // masked_image = image · (mask < 0.5): the repaint region becomes 0 (mid grey).
            int plane = width * height;
            for (int c = 0; c < 3; c++)
                for (int p = 0; p < plane; p++)
                    image[c * plane + p] *= 1f - mask[p];
            masked = Encode(image);
        }
        return new InitImage(latents, latentMask, masked);

        float[] Encode(float[] pixels)
        {
            var encoded = encoder.Encode(pixels, 1, height, width, latentChannels, runOptions);
            System.Numerics.Tensors.TensorPrimitives.Multiply(encoded, profile.VaeScalingFactor, encoded);
            return encoded;
        }
    }

    /// <summary>The 9-channel UNet's extra channels of one row: mask [1, h, w] then masked-image latents [C, h, w].</summary>
    public float[] InpaintChannels() => [.. LatentMask!, .. MaskedLatents!];
}
