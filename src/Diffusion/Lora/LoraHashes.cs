using RenderFarm.GenerationRules;
using System.Text;

namespace RenderFarm.Diffusion.Lora;

/// <summary>
/// AUTOMATIC1111's "Lora hashes" generation parameter: <c>Lora hashes: "name: 0123456789ab, other: …"</c> — each LoRA of
/// the image as it was named (with ':' and ',' removed) and its <see cref="LoraFile.ShortHash"/>, in the order the
/// LoRAs were asked for, the whole value quoted as A1111's infotext quotes any value holding ':' (JSON string
/// escaping, non-ASCII kept).
/// </summary>
public static class LoraHashes
{
    public const string Keyword = "Lora hashes";

    /// <summary>The parameter's value for <paramref name="loras"/>, or null for an empty set.</summary>
    public static string? Format(LoraSet loras, Func<string, string> shortHash)
    {
        ArgumentNullException.ThrowIfNull(loras);
        if (loras.IsEmpty)
        {
            return null;
        }
        var entries = loras.Items.Select(l => $"{l.Name.Replace(":", "", StringComparison.Ordinal).Replace(",", "", StringComparison.Ordinal)}: {shortHash(l.Name)}");
        return Quote(string.Join(", ", entries));
    }

    /// <summary>Python's <c>json.dumps(text, ensure_ascii=False)</c>.</summary>
    internal static string Quote(string text)
    {
        var quoted = new StringBuilder(text.Length + 2).Append('"');
        foreach (char c in text)
        {
            switch (c)
            {
                case '"': quoted.Append("\\\""); break;
                case '\\': quoted.Append("\\\\"); break;
                case '\n': quoted.Append("\\n"); break;
                case '\r': quoted.Append("\\r"); break;
                case '\t': quoted.Append("\\t"); break;
                case '\b': quoted.Append("\\b"); break;
                case '\f': quoted.Append("\\f"); break;
                case < ' ': quoted.Append("\\u").Append(((int)c).ToString("x4", System.Globalization.CultureInfo.InvariantCulture)); break;
                default: quoted.Append(c); break;
            }
        }
        return quoted.Append('"').ToString();
    }
}
