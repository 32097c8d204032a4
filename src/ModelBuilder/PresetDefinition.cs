using RenderFarm.ModelBuilder.Components;
using RenderFarm.ModelBuilder.Graph;

namespace RenderFarm.ModelBuilder;

/// <summary>
/// Everything that defines one model directory. All widths live here; the builders hard-code none.
/// <see cref="FloatType"/> is the weights' and the inputs'/outputs' type, <see cref="ComputeType"/> the activations'
/// (float16 for a model exported in half precision, float32 where only the storage is float16).
/// <see cref="FullSize"/> presets take gigabytes and minutes: benchmarks write them, tests do not.
/// <see cref="FusedAttention"/>: see <see cref="GraphOptions"/>.
/// <see cref="ControlNetEmbedding"/>: the conditioning embedding's widths of the ControlNets <c>modelbuilder
/// controlnet</c> writes for this architecture (<see cref="ControlNet"/>), null when it writes none;
/// <see cref="ControlNetUNet"/>: the directory also holds <c>controlnet/model.onnx</c>, the UNet that takes a
/// ControlNet's residuals (OnnxStack's layout), with the plain UNet's weights.
/// </summary>
public sealed record PresetDefinition(
    string Name,
    string Description,
    ModelFamily Family,
    TextEncoderConfig TextEncoder,
    TextEncoderConfig? TextEncoder2,
    UNetConfig UNet,
    VaeConfig Vae,
    int? VocabSize = null,
    ElementType FloatType = ElementType.Float,
    ElementType TimestepType = ElementType.Float,
    ElementType InputIdsType = ElementType.Int32,
    string PredictionType = "epsilon",
    int SampleSize = 64,
    ElementType ComputeType = ElementType.Float,
    bool FullSize = false,
    bool FusedAttention = false,
    Distillation Distillation = Distillation.None,
    bool Refiner = false,
    int[]? ControlNetEmbedding = null,
    bool ControlNetUNet = false,
    TinyDecoderConfig? TinyDecoder = null)
{
    /// <summary>
    /// The SDXL refiner's layout: only the second text encoder (text_encoder_2, tokenizer_2) is written, the UNet
    /// cross-attends to its states alone and takes 5 time_ids (original size, crop, aesthetic score); model_index
    /// declares requires_aesthetics_score. <see cref="TextEncoder"/> is then unused.
    /// </summary>
    public bool WritesFirstEncoder => !Refiner;

    /// <summary>This architecture's ControlNet: a copy of the UNet's encoder half on the latents (4 channels, also for an inpainting UNet).</summary>
    public ControlNetConfig? ControlNet => ControlNetEmbedding is { } widths
        ? new ControlNetConfig(UNet with { InChannels = Vae.LatentChannels, OutChannels = Vae.LatentChannels }, widths)
        : null;

    /// <summary>SDXL's UNet cross-attends to both encoders' penultimate states, concatenated.</summary>
    public int ContextDim => UNet.ContextDim;
}
