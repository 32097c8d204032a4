namespace RenderFarm.ModelBuilder.Lora;

/// <summary>The key layout of a written LoRA file.</summary>
public enum LoraLayout
{
    /// <summary>kohya / AUTOMATIC1111: lora_unet_…, lora_te_… (SDXL lora_te1_/lora_te2_), .lora_down/.lora_up/.alpha.</summary>
    Kohya,

    /// <summary>diffusers / PEFT: unet.…, text_encoder.…, text_encoder_2.…, .lora_A/.lora_B (alpha only when set).</summary>
    Peft,
}
