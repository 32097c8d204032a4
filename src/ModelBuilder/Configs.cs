using RenderFarm.ModelBuilder.Components;
using RenderFarm.ModelBuilder.Graph;

namespace RenderFarm.ModelBuilder;

public enum Activation { QuickGelu, Gelu }

/// <summary>CLIP text transformer (transformers CLIPTextModel / CLIPTextModelWithProjection).</summary>
public sealed record TextEncoderConfig(
    int Hidden,
    int Layers,
    int Heads,
    int Intermediate,
    Activation Act = Activation.QuickGelu,
    int MaxPositions = 77,
    int? ProjectionDim = null,
    bool OutputHiddenStates = false,
    double LayerNormEps = 1e-5)
{
    public int HeadDim => Hidden / Heads;
}

/// <summary>SDXL micro-conditioning: text_embeds [B, TextEmbedDim] and time_ids [B, 6] (the refiner: 5) → add_embedding.</summary>
public sealed record SdxlConditioning(int TextEmbedDim, int AdditionTimeEmbedDim, int TimeIdCount = 6)
{
    public int ProjectionInputDim => TextEmbedDim + TimeIdCount * AdditionTimeEmbedDim;
}

/// <summary>
/// diffusers UNet2DConditionModel. Per down block i: BlockOut[i] channels, CrossAttention[i] (CrossAttnDownBlock2D vs
/// DownBlock2D), Heads[i] attention heads, TransformerLayers[i] transformer blocks; up blocks mirror them.
/// <see cref="TimeCondProjDim"/> (LCM-distilled UNets): a timestep_cond input [B, dim] (the guidance embedding) added to
/// the timestep embedding through time_embedding.cond_proj.
/// </summary>
public sealed record UNetConfig(
    int InChannels,
    int OutChannels,
    int[] BlockOut,
    bool[] CrossAttention,
    int[] Heads,
    int LayersPerBlock,
    int ContextDim,
    int[]? TransformerLayers = null,
    bool LinearProjection = false,
    int NormGroups = 32,
    double NormEps = 1e-5,
    SdxlConditioning? Sdxl = null,
    int? TimeCondProjDim = null)
{
    public int TimeEmbedDim => BlockOut[0] * 4;
    public int TransformerLayersAt(int block) => TransformerLayers?[block] ?? 1;
}

/// <summary>diffusers AutoencoderKL (encoder + decoder share the widths; decoder blocks have LayersPerBlock + 1 resnets).</summary>
public sealed record VaeConfig(
    int[] BlockOut,
    int LayersPerBlock,
    int NormGroups = 32,
    int ImageChannels = 3,
    int LatentChannels = 4,
    double ScalingFactor = 0.18215,
    double NormEps = 1e-6)
{
    public int DownFactor => 1 << (BlockOut.Length - 1);
}

public enum ModelFamily { StableDiffusion, StableDiffusionInpaint, StableDiffusion2, StableDiffusionXL }

/// <summary>
/// A few-step distilled model, by what its scheduler config says: LCM (LCMScheduler, original_inference_steps 50,
/// timestep_scaling 10, as LCM_Dreamshaper_v7's) or Turbo (EulerDiscreteScheduler with trailing spacing, as
/// sd-turbo's and sdxl-turbo's).
/// </summary>
public enum Distillation { None, Lcm, Turbo }

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

/// <summary>
/// diffusers ControlNetModel: a copy of <see cref="UNet"/>'s encoder half, and the conditioning embedding's widths
/// (<see cref="EmbeddingOut"/>, diffusers' conditioning_embedding_out_channels: (16, 32, 96, 256) for SD; one strided
/// conv per step, so 2^(steps) must be the VAE's factor).
/// </summary>
public sealed record ControlNetConfig(UNetConfig UNet, int[] EmbeddingOut, int ConditioningChannels = 3);
