using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using RenderFarm.Diffusion.Tensors;

namespace RenderFarm.Diffusion.Models;

/// <summary>
/// vae_encoder/model.onnx: sample [B, 3, H, W] in [−1, 1] → the latent distribution's mean [B, C, h, w], unscaled.
/// Exports differ in what they return, told apart by the output's name and channel count: <c>latent_sample</c> (the
/// mean, or diffusers' legacy in-graph sample) or optimum's <c>latent_parameters</c> = mean ‖ logvar (2C channels,
/// of which the first C are kept: diffusers' <c>sample_mode="argmax"</c>).
/// </summary>
internal sealed class VaeEncoder : IDisposable
{
    private readonly OnnxComponent _component;
    private readonly string _inputName;
    private readonly TensorElementType _inputType;
    private readonly string _outputName;
    private readonly bool _meanAndLogVariance;
    private long _imagesEncoded;

    public VaeEncoder(OnnxComponent component)
    {
        _component = component;
        (_inputName, var input) = component.RequireInput("sample", fallbackToOnly: true);
        component.RequireElementType(_inputName, input, TensorElementType.Float, TensorElementType.Float16);
        component.RequireRank(_inputName, input, 4);
        _inputType = input.ElementDataType;
        StaticBatch = OnnxComponent.StaticDim(input, 0);
        _outputName = component.Outputs.ContainsKey("latent_parameters") ? "latent_parameters" : component.RequireOutput("latent_sample").Name;
        var output = component.Outputs[_outputName];
        component.RequireElementType(_outputName, output, TensorElementType.Float, TensorElementType.Float16);
        component.RequireRank(_outputName, output, 4);
        _meanAndLogVariance = _outputName == "latent_parameters";
    }

    public int? StaticBatch { get; }

    /// <summary>Images encoded since load (tests observe that shared init images are encoded once).</summary>
    public long ImagesEncoded => Interlocked.Read(ref _imagesEncoded);

    /// <summary>Encodes <paramref name="batch"/> images [3, H, W]; returns the latent means [batch, C, h, w].</summary>
    public float[] Encode(ReadOnlySpan<float> images, int batch, int height, int width, int latentChannels, RunOptions runOptions)
    {
        int perImage = 3 * height * width;
        Interlocked.Add(ref _imagesEncoded, batch);
        int chunk = StaticBatch ?? batch;
        float[]? result = null;
        for (int start = 0; start < batch; start += chunk)
        {
            using var input = TensorBuffer.Create(_inputType, chunk, 3, height, width);
            for (int r = 0; r < chunk; r++)
            {
                int source = Math.Min(start + r, batch - 1);
                input.Write(images.Slice(source * perImage, perImage), r * perImage);
            }
            using var outputs = _component.Run(runOptions, [_inputName], [input.Value], [_outputName]);
            var latents = TensorBuffer.ReadAsFloat(outputs[0], out var shape);
            int expected = _meanAndLogVariance ? 2 * latentChannels : latentChannels;
            if (shape.Length != 4 || shape[0] != chunk || shape[1] != expected)
            {
                throw new InvalidOperationException(
                    $"The VAE encoder returned '{_outputName}' of shape [{string.Join(", ", shape)}]; expected [{chunk}, {expected}, h, w].");
            }
            int perLatent = latentChannels * (int)(shape[2] * shape[3]);
            int perOutput = (int)(shape[1] * shape[2] * shape[3]);
            result ??= new float[batch * perLatent];
            for (int r = 0; r < Math.Min(chunk, batch - start); r++)
            {
                // mean ‖ logvar: the mean is the first C channels of each row.
                latents.AsSpan(r * perOutput, perLatent).CopyTo(result.AsSpan((start + r) * perLatent));
            }
        }
        return result!;
    }

    public void Dispose() => _component.Dispose();
}
