using System.Globalization;
using RenderFarm.GenerationRules;
using RenderFarm.Protocol;

namespace RenderFarm.Shared;

/// <summary>
/// LoRAs as the protocol carries them (<see cref="Lora"/>: a name, a weight, an optional UNet weight) and as the
/// generation rules read them (<see cref="LoraWeight"/>, <see cref="LoraSet"/>), both ways, and as people read them.
/// </summary>
public static class LoraMessages
{
    public static LoraWeight ToWeight(Lora lora)
    {
        var textEncoder = lora.HasWeight ? lora.Weight : 1f;
        return new LoraWeight(lora.Name, textEncoder, lora.HasUnetWeight ? lora.UnetWeight : textEncoder);
    }

    /// <summary>The set <paramref name="loras"/> make (a name twice adds up).</summary>
    /// <exception cref="ArgumentException">A LoRA without a name, or a multiplier that is not a finite number.</exception>
    public static LoraSet ToSet(IEnumerable<Lora> loras) => LoraSet.Of(loras.Select(ToWeight));

    public static Lora ToMessage(LoraWeight weight)
    {
        var lora = new Lora { Name = weight.Name, Weight = weight.TextEncoderScale };
        if (weight.UNetScale != weight.TextEncoderScale) lora.UnetWeight = weight.UNetScale;
        return lora;
    }

    public static IEnumerable<Lora> ToMessages(LoraSet set) => set.Items.Select(ToMessage);

    /// <summary>As <c>farm submit --lora</c> takes them: <c>style:0.8, detail:1:0.5</c>.</summary>
    public static string Describe(IEnumerable<Lora> loras) =>
        string.Join(", ", loras.Select(ToWeight).Select(w => w.TextEncoderScale == w.UNetScale
            ? $"{w.Name}:{Number(w.UNetScale)}"
            : $"{w.Name}:{Number(w.TextEncoderScale)}:{Number(w.UNetScale)}"));

    private static string Number(float value) => value.ToString("0.###", CultureInfo.InvariantCulture);
}
