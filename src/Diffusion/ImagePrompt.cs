namespace RenderFarm.Diffusion;

/// <summary>One image of a request: its prompt, negative prompt and seed, and optionally its own init image and mask.</summary>
/// <remarks>
/// Prompts use the AUTOMATIC1111 attention syntax: <c>(word)</c> ×1.1, <c>[word]</c> ÷1.1, <c>(word:1.3)</c>,
/// nesting multiplies, <c>\(</c> is a literal parenthesis. Prompts longer than the text encoder's window (75 tokens
/// plus BOS/EOS) are encoded in windows whose outputs are concatenated.
/// </remarks>
public sealed record ImagePrompt(string Prompt, string NegativePrompt, long Seed)
{
    /// <summary>
    /// This image's img2img / inpainting source (PNG or JPEG bytes); null: the request's
    /// <see cref="GenerationRequest.InitImage"/>. A batch is uniform: every image has an init image or none does.
    /// Images sharing one (the same array, or the same bytes) share one VAE encode.
    /// </summary>
    public byte[]? InitImage { get; init; }

    /// <summary>
    /// This image's inpainting mask (white = repaint, black = keep); null: the request's
    /// <see cref="GenerationRequest.MaskImage"/>. A batch is uniform: every image has a mask or none does.
    /// </summary>
    public byte[]? MaskImage { get; init; }
}
