using RenderFarm.ModelBuilder.Components;
using RenderFarm.ModelBuilder.Graph;

namespace RenderFarm.ModelBuilder;

/// <summary>The named model presets and the entry points to write them.</summary>
public static class ModelPresets
{
    private static readonly TextEncoderConfig TinyText = new(Hidden: 32, Layers: 2, Heads: 2, Intermediate: 64);
    private static readonly UNetConfig TinyUNet = new(InChannels: 4, OutChannels: 4, BlockOut: [32, 64],
        CrossAttention: [true, false], Heads: [2, 2], LayersPerBlock: 1, ContextDim: 32);
    private static readonly VaeConfig TinyVae = new(BlockOut: [16, 16, 32, 32], LayersPerBlock: 1, NormGroups: 8);

    // SD 2.x widths (tiny-sd2, and tiny-turbo, which is SD-Turbo's structure).
    private static readonly TextEncoderConfig TinySd2Text = new(Hidden: 1024, Layers: 1, Heads: 16, Intermediate: 256, Act: Activation.Gelu);
    private static readonly UNetConfig TinySd2UNet = TinyUNet with { Heads = [2, 4], LinearProjection = true, ContextDim = 1024 };

    // SDXL's second text encoder, UNet and VAE scaling (tiny-sdxl, and tiny-sdxl-refiner, which has only this encoder).
    private static readonly TextEncoderConfig TinyXlText2 = TinyText with { Act = Activation.Gelu, ProjectionDim = 32, OutputHiddenStates = true };
    private static readonly UNetConfig TinyXlUNet = new(InChannels: 4, OutChannels: 4, BlockOut: [32, 64], CrossAttention: [false, true],
        Heads: [2, 4], LayersPerBlock: 2, ContextDim: 64, TransformerLayers: [1, 2], LinearProjection: true,
        Sdxl: new SdxlConditioning(TextEmbedDim: 32, AdditionTimeEmbedDim: 8));
    private static readonly VaeConfig TinyXlVae = TinyVae with { ScalingFactor = 0.13025 };

    private static readonly PresetDefinition Tiny = new("tiny",
        "SD 1.x structure, tiny widths (text 32×2, UNet 32/64, VAE 16/16/32/32, factor 8): renders 64×64 in milliseconds",
        ModelFamily.StableDiffusion, TinyText, null, TinyUNet, TinyVae,
        // Conditioning embedding 8/8/16/16: three strided convs, the VAE's factor 8.
        ControlNetEmbedding: [8, 8, 16, 16]);

    private static readonly PresetDefinition Sd15 = new("sd15",
        "Stable Diffusion 1.5 dimensions (~1.07B parameters, random weights in external data; ~4.3 GB)",
        ModelFamily.StableDiffusion,
        new TextEncoderConfig(Hidden: 768, Layers: 12, Heads: 12, Intermediate: 3072),
        null,
        new UNetConfig(InChannels: 4, OutChannels: 4, BlockOut: [320, 640, 1280, 1280],
            CrossAttention: [true, true, true, false], Heads: [8, 8, 8, 8], LayersPerBlock: 2, ContextDim: 768),
        new VaeConfig(BlockOut: [128, 256, 512, 512], LayersPerBlock: 2),
        VocabSize: 49408,
        FullSize: true,
        ControlNetEmbedding: [16, 32, 96, 256]);

    private static readonly PresetDefinition[] All =
    [
        Tiny,
        Tiny with
        {
            Name = "tiny-control", ControlNetUNet = true,
            Description = "tiny plus controlnet/model.onnx: the UNet that takes ControlNet residuals (same weights as unet/); ControlNets: modelbuilder controlnet tiny",
        },
        Tiny with
        {
            Name = "tiny-taesd",
            Description = "tiny plus vae_decoder_tiny/model.onnx: a TAESD decoder (stages 8/8/8/8 wide, 3/3/3/1 blocks) for live previews",
            TinyDecoder = new TinyDecoderConfig(BlockOut: [8, 8, 8, 8], Blocks: [3, 3, 3, 1]),
        },
        Tiny with
        {
            Name = "tiny-inpaint", Family = ModelFamily.StableDiffusionInpaint,
            Description = "tiny with a 9-channel inpainting UNet (latents 4 + mask 1 + masked-image latents 4)",
            UNet = TinyUNet with { InChannels = 9 },
        },
        Tiny with
        {
            Name = "tiny-fp16", FloatType = ElementType.Float16, TimestepType = ElementType.Float16,
            Description = "tiny with float16 weights, inputs and outputs (timestep float16)",
        },
        Tiny with
        {
            Name = "tiny-int64-timestep", TimestepType = ElementType.Int64, InputIdsType = ElementType.Int64,
            Description = "tiny with an int64 UNet timestep and int64 input_ids",
        },
        Tiny with
        {
            Name = "tiny-sd2", Family = ModelFamily.StableDiffusion2, PredictionType = "v_prediction",
            Description = "SD 2.x structure: 1024-wide text encoder (1 layer, GELU), linear projections, v-prediction",
            TextEncoder = TinySd2Text,
            UNet = TinySd2UNet,
        },
        Tiny with
        {
            Name = "tiny-mha", FusedAttention = true,
            Description = "tiny with attention fused into com.microsoft.MultiHeadAttention, as ONNX Runtime's SD optimiser writes it",
        },
        Tiny with
        {
            Name = "tiny-sdxl", Family = ModelFamily.StableDiffusionXL,
            Description = "SDXL structure: two text encoders (hidden_states.*, text_embeds), text_embeds + time_ids UNet",
            TextEncoder = TinyText with { OutputHiddenStates = true },
            TextEncoder2 = TinyXlText2,
            UNet = TinyXlUNet,
            Vae = TinyXlVae,
        },
        Tiny with
        {
            Name = "tiny-sdxl-control", Family = ModelFamily.StableDiffusionXL, ControlNetUNet = true,
            Description = "tiny-sdxl plus controlnet/model.onnx: the SDXL UNet that takes ControlNet residuals (same weights as unet/); ControlNets: modelbuilder controlnet tiny-sdxl",
            TextEncoder = TinyText with { OutputHiddenStates = true },
            TextEncoder2 = TinyXlText2,
            UNet = TinyXlUNet,
            Vae = TinyXlVae,
        },
        Tiny with
        {
            Name = "tiny-sdxl-refiner", Family = ModelFamily.StableDiffusionXL, Refiner = true,
            Description = "SDXL refiner structure: text_encoder_2 only (hidden_states.*, text_embeds), a UNet on its states alone with 5 time_ids (aesthetic score)",
            TextEncoder = TinyXlText2,
            TextEncoder2 = TinyXlText2,
            UNet = TinyXlUNet with { ContextDim = 32, Sdxl = TinyXlUNet.Sdxl! with { TimeIdCount = 5 } },
            Vae = TinyXlVae,
        },
        Tiny with
        {
            Name = "tiny-lcm", Distillation = Distillation.Lcm,
            Description = "tiny LCM-distilled: UNet with timestep_cond (time_cond_proj_dim 16, time_embedding.cond_proj), LCMScheduler config",
            UNet = TinyUNet with { TimeCondProjDim = 16 },
        },
        Tiny with
        {
            Name = "tiny-turbo", Family = ModelFamily.StableDiffusion2, Distillation = Distillation.Turbo,
            Description = "SD-Turbo structure: tiny-sd2's encoders and UNet, epsilon prediction, Euler with trailing timestep spacing",
            TextEncoder = TinySd2Text,
            UNet = TinySd2UNet,
        },
        Sd15,
        Sd15 with
        {
            Name = "sd15-fp16", FloatType = ElementType.Float16, TimestepType = ElementType.Float16, ComputeType = ElementType.Float16,
            Description = "sd15 exported in half precision (diffusers' --fp16 export): float16 weights, inputs, outputs and activations; ~2.1 GB, for GPUs",
        },
        Sd15 with
        {
            Name = "sd15-fp16-mha", FloatType = ElementType.Float16, TimestepType = ElementType.Float16, ComputeType = ElementType.Float16,
            FusedAttention = true,
            Description = "sd15-fp16 with attention fused into com.microsoft.MultiHeadAttention (ONNX Runtime's SD optimiser's form); for GPUs",
        },
    ];

    /// <summary>Preset names, tiny first.</summary>
    public static IReadOnlyList<string> Names { get; } = All.Select(p => p.Name).ToArray();

    /// <summary>The presets small enough to write in tests (seconds, megabytes): every one but the full-size ones.</summary>
    public static IReadOnlyList<string> SmallNames { get; } = All.Where(p => !p.FullSize).Select(p => p.Name).ToArray();

    public static IReadOnlyList<PresetDefinition> Definitions => All;

    public static PresetDefinition Get(string preset) =>
        All.FirstOrDefault(p => p.Name == preset)
        ?? throw new ArgumentException($"unknown preset '{preset}'; valid: {string.Join(", ", Names)}", nameof(preset));

    /// <summary>
    /// Writes the preset's model directory (diffusers ONNX layout). The directory must not exist or be empty; the
    /// files are written to a temporary sibling and moved into place at the end.
    /// </summary>
    public static void Write(string preset, string outputDirectory, ulong seed = 0) =>
        ModelDirectoryWriter.Write(Get(preset), outputDirectory, new ModelWriteOptions { Seed = seed });

    public static ModelWriteResult Write(string preset, string outputDirectory, ModelWriteOptions options) =>
        ModelDirectoryWriter.Write(Get(preset), outputDirectory, options);

    /// <summary>Parameter count per component, from the graphs alone (no weights are generated).</summary>
    public static IReadOnlyDictionary<string, long> CountParameters(string preset) =>
        ModelDirectoryWriter.BuildGraphs(Get(preset)).ToDictionary(c => c.Folder, c => c.Graph.ParameterCount);
}
