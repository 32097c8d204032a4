using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using RenderFarm.Diffusion.Tensors;

namespace RenderFarm.Diffusion.Models;

/// <summary>
/// vae_decoder/model.onnx: latent_sample [B, C, h, w] → sample [B, 3, H, W] in [−1, 1]. Decodes a whole batch in
/// one run (in fixed-size chunks only when the export fixes the batch size).
/// </summary>
internal sealed class VaeDecoder : IDisposable
{
    private readonly OnnxComponent _component;
    private readonly string _inputName;
    private readonly TensorElementType _inputType;
    private readonly string _outputName;

    public VaeDecoder(OnnxComponent component)
    {
        _component = component;
        (_inputName, var input) = component.RequireInput("latent_sample", fallbackToOnly: true);
        component.RequireElementType(_inputName, input, TensorElementType.Float, TensorElementType.Float16);
        component.RequireRank(_inputName, input, 4);
        _inputType = input.ElementDataType;
        LatentChannels = OnnxComponent.StaticDim(input, 1);
        StaticBatch = OnnxComponent.StaticDim(input, 0);
        (_outputName, var output) = component.RequireOutput("sample");
        component.RequireElementType(_outputName, output, TensorElementType.Float, TensorElementType.Float16);
        component.RequireRank(_outputName, output, 4);
    }

    public int? LatentChannels { get; }

    public int? StaticBatch { get; }

    /// <summary>
    /// Decodes <paramref name="batch"/> latents of [channels, h, w] into <paramref name="destination"/> ([batch, 3, H, W]
    /// as float32) and returns H and W. When the images are not the size <paramref name="destination"/> was made for,
    /// nothing is written and the sizes the decoder produced are returned for the caller's error.
    /// </summary>
    public (int Height, int Width) Decode(ReadOnlySpan<float> latents, int batch, int channels, int height, int width, RunOptions runOptions, Span<float> destination)
    {
        int perLatent = channels * height * width;
        int chunk = StaticBatch ?? batch;
        int imageHeight = 0, imageWidth = 0;
        using var input = TensorBuffer.Create(_inputType, chunk, channels, height, width);
        for (int start = 0; start < batch; start += chunk)
        {
            for (int r = 0; r < chunk; r++)
            {
                int source = Math.Min(start + r, batch - 1);
                input.Write(latents.Slice(source * perLatent, perLatent), r * perLatent);
            }
            using var outputs = _component.Run(runOptions, [_inputName], [input.Value], [_outputName]);
            var shape = outputs[0].GetTensorTypeAndShape().Shape;
            if (shape.Length != 4 || shape[0] != chunk || shape[1] != 3)
            {
                throw new InvalidOperationException(
                    $"The VAE decoder returned shape [{string.Join(", ", shape)}]; expected [{chunk}, 3, H, W].");
            }
            (imageHeight, imageWidth) = ((int)shape[2], (int)shape[3]);
            int perImage = checked(3 * imageHeight * imageWidth);
            if ((long)perImage * batch != destination.Length)
            {
                break;
            }
            int keep = Math.Min(chunk, batch - start);
            TensorBuffer.ReadLeading(outputs[0], destination.Slice(start * perImage, keep * perImage));
        }
        return (imageHeight, imageWidth);
    }

    public void Dispose() => _component.Dispose();
}
