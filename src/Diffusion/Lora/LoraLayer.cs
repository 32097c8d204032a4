namespace RenderFarm.Diffusion.Lora;

/// <summary>
/// One low-rank layer of a LoRA file: the module it changes (<see cref="Component"/> + <see cref="Module"/>), and the
/// names of its down ([rank, in(, kh, kw)]), up ([out, rank(, 1, 1)]) and optional alpha tensors.
/// </summary>
/// <param name="Key">The layer's key as the file writes it (its tensors' common prefix), for messages.</param>
/// <param name="Component">unet, text_encoder or text_encoder_2; null when the key does not say (PEFT's base_model.model.…).</param>
/// <param name="Module">The module path: dotted (<c>down_blocks.0.attentions.0…to_q</c>) or, for kohya keys, with '_' for '.'.</param>
/// <param name="Underscored">Whether <see cref="Module"/> is kohya's underscored form.</param>
/// <param name="Down">The name of the down tensor.</param>
/// <param name="Up">The name of the up tensor.</param>
/// <param name="Alpha">The name of the alpha tensor, or null when the file has none (alpha = rank).</param>
public sealed record LoraLayer(string Key, string? Component, string Module, bool Underscored, string Down, string Up, string? Alpha);
