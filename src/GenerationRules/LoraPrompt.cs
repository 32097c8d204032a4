using System.Globalization;
using System.Text.RegularExpressions;

namespace RenderFarm.GenerationRules;

/// <summary>
/// AUTOMATIC1111's extra-network syntax for LoRAs in a prompt: <c>&lt;lora:name&gt;</c> (multiplier 1),
/// <c>&lt;lora:name:0.8&gt;</c>, <c>&lt;lora:name:te:unet&gt;</c> (text-encoder and UNet multipliers) and the named forms
/// <c>te=</c>, <c>unet=</c> (A1111's <c>dyn=</c> is accepted and ignored). The tags are removed from the text that is
/// encoded — the encoder never sees them — and returned as the <see cref="LoraSet"/> they ask for. A1111 also calls
/// them <c>&lt;lyco:…&gt;</c>, which is read the same way. Anything else in angle brackets is prompt text.
/// </summary>
public static partial class LoraPrompt
{
    [GeneratedRegex(@"<(?:lora|lyco):([^:>]+)((?::[^:>]*)*)>", RegexOptions.CultureInvariant)]
    private static partial Regex Tag();

    /// <summary>Splits <paramref name="prompt"/> into the text to encode and the LoRAs its tags ask for.</summary>
    /// <exception cref="ArgumentException">A tag whose multiplier is not a number.</exception>
    public static (string Text, LoraSet Loras) Parse(string prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        if (!prompt.Contains('<'))
        {
            return (prompt, LoraSet.Empty);
        }
        var found = new List<LoraWeight>();
        var text = Tag().Replace(prompt, match =>
        {
            found.Add(Weight(match, $"The tag {match.Value}"));
            return "";
        });
        return found.Count == 0 ? (prompt, LoraSet.Empty) : (text, LoraSet.Of(found));
    }

    /// <summary>The LoRAs an image asks for: the request's own, then its prompt's and negative prompt's tags.</summary>
    public static LoraSet ForImage(LoraSet requestLoras, string prompt, string negativePrompt) =>
        requestLoras.With(Parse(prompt).Loras).With(Parse(negativePrompt).Loras);

    /// <summary>
    /// One LoRA written as the inside of a tag, as <c>farm submit --lora</c> and a prompt file's <c>loras</c> column take
    /// it: <c>name</c>, <c>name:0.8</c>, <c>name:0.8:0.5</c> (text encoder, UNet), <c>name:unet=0.5</c>.
    /// </summary>
    /// <exception cref="ArgumentException">Not of that form, or a multiplier that is not a number.</exception>
    public static LoraWeight ParseSpec(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var match = Tag().Match($"<lora:{spec.Trim()}>");
        if (!match.Success || match.Length != spec.Trim().Length + "<lora:>".Length || ProblemWithName(match.Groups[1].Value.Trim()) is not null)
        {
            throw new ArgumentException($"'{spec}' is not a LoRA: write NAME, NAME:WEIGHT or NAME:TE_WEIGHT:UNET_WEIGHT (a name without ':', '<', '>' or ',').");
        }
        return Weight(match, $"'{spec.Trim()}'");
    }

    /// <summary>
    /// Why <paramref name="name"/> cannot name a LoRA in a request, or null: it must be 1 to 128 characters without
    /// control characters, ':', '&lt;', '&gt;' or ',' (which tags, specs and lists use), as a file name on the workers.
    /// </summary>
    public static string? ProblemWithName(string name) =>
        name.Length is 0 or > 128 ? "must be 1 to 128 characters"
        : name.Trim().Length != name.Length ? "must not start or end with spaces"
        : name.Any(c => char.IsControl(c) || c is ':' or '<' or '>' or ',') ? "must not contain control characters, ':', '<', '>' or ','"
        : null;

    /// <summary>LoRAs written as <see cref="ParseSpec"/> specs separated by commas (<c>style:0.8, detail</c>); empty text is none.</summary>
    /// <exception cref="ArgumentException">A spec that is not one.</exception>
    public static IReadOnlyList<LoraWeight> ParseList(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(ParseSpec).ToArray();
    }

    /// <param name="shown">How messages name what was written: the tag, or the spec.</param>
    private static LoraWeight Weight(Match match, string shown)
    {
        string name = match.Groups[1].Value.Trim();
        var positional = new List<float>();
        float? te = null, unet = null;
        foreach (var raw in match.Groups[2].Value.Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            var part = raw.Trim();
            int equals = part.IndexOf('=');
            if (equals > 0)
            {
                var key = part[..equals].Trim();
                var value = part[(equals + 1)..].Trim();
                switch (key)
                {
                    case "te": te = Number(value); break;
                    case "unet": unet = Number(value); break;
                    case "dyn": break;
                    default: throw new ArgumentException($"{shown} has an unknown setting '{key}' (te, unet and dyn are known).");
                }
                continue;
            }
            positional.Add(Number(part));
        }
        float textEncoder = te ?? (positional.Count > 0 ? positional[0] : 1f);
        float unetScale = unet ?? (positional.Count > 1 ? positional[1] : textEncoder);
        return new LoraWeight(name, textEncoder, unetScale);

        float Number(string value) =>
            float.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var number) && float.IsFinite(number)
                ? number
                : throw new ArgumentException($"{shown} has '{value}' where a multiplier (a number) belongs.");
    }
}
