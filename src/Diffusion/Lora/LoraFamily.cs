namespace RenderFarm.Diffusion.Lora;

/// <summary>The model family a LoRA file was made for, as far as its keys and kohya metadata tell.</summary>
public enum LoraFamily
{
    /// <summary>One text encoder (SD 1.x or 2.x; the shapes tell them apart when applied).</summary>
    StableDiffusion,

    /// <summary>Two text encoders (keys lora_te1_/lora_te2_ or text_encoder_2.…, or kohya's ss_base_model_version sdxl_…).</summary>
    StableDiffusionXL,

    /// <summary>UNet layers only and no metadata: applies to whichever family its shapes fit.</summary>
    Unknown,
}
