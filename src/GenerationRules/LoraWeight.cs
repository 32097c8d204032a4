using System.Globalization;

namespace RenderFarm.GenerationRules;

/// <summary>
/// One LoRA of a request, by name, with AUTOMATIC1111's two multipliers: one for the text encoder layers, one for the
/// UNet layers (<c>&lt;lora:name:w&gt;</c> sets both, <c>&lt;lora:name:te:unet&gt;</c> each).
/// </summary>
public readonly record struct LoraWeight(string Name, float TextEncoderScale, float UNetScale)
{
    public LoraWeight(string name, float scale) : this(name, scale, scale) { }

    /// <summary>The A1111 tag that asks for this LoRA: <c>&lt;lora:name:0.8&gt;</c> (or <c>:te:unet</c> when they differ).</summary>
    public override string ToString() => TextEncoderScale == UNetScale
        ? $"<lora:{Name}:{Format(UNetScale)}>"
        : $"<lora:{Name}:{Format(TextEncoderScale)}:{Format(UNetScale)}>";

    internal static string Format(float value) => value.ToString("0.###", CultureInfo.InvariantCulture);
}
