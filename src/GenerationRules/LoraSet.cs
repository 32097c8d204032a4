using System.Globalization;
using System.Text;

namespace RenderFarm.GenerationRules;

/// <summary>
/// The LoRAs an image is rendered with: names (ordinal, as written) with their multipliers, in the order first asked
/// for; a name asked for twice has its multipliers added (the weights it adds are linear in them). Two sets are equal
/// when they hold the same names and multipliers, in any order: that equality is the key a worker caches a model
/// variant under and the farm groups images by. <see cref="Empty"/> is the plain model.
/// </summary>
public sealed class LoraSet : IEquatable<LoraSet>
{
    private readonly LoraWeight[] _items;
    private readonly string _key;

    public static LoraSet Empty { get; } = new([]);

    /// <summary>Most LoRAs one image may ask for (the farm's limit; the pipeline takes any number).</summary>
    public const int MaxPerImage = 32;

    private LoraSet(LoraWeight[] items)
    {
        _items = items;
        var sorted = items.OrderBy(i => i.Name, StringComparer.Ordinal);
        _key = string.Join("\n", sorted.Select(i => $"{i.Name}\t{i.TextEncoderScale.ToString("R", CultureInfo.InvariantCulture)}\t{i.UNetScale.ToString("R", CultureInfo.InvariantCulture)}"));
    }

    /// <summary>The set of <paramref name="items"/>: repeated names add up, and names whose multipliers are both 0 stay (they render as the plain model, through the LoRA machinery).</summary>
    /// <exception cref="ArgumentException">A nameless LoRA, or a multiplier (given, or the sum of a name's) that is not a finite number.</exception>
    public static LoraSet Of(IEnumerable<LoraWeight> items)
    {
        ArgumentNullException.ThrowIfNull(items);
        var merged = new List<LoraWeight>();
        foreach (var item in items)
        {
            if (string.IsNullOrWhiteSpace(item.Name))
            {
                throw new ArgumentException("A LoRA needs a name.", nameof(items));
            }
            if (!float.IsFinite(item.TextEncoderScale) || !float.IsFinite(item.UNetScale))
            {
                throw new ArgumentException($"The LoRA '{item.Name}' has a multiplier that is not a finite number.", nameof(items));
            }
            int found = merged.FindIndex(m => m.Name == item.Name);
            if (found < 0)
            {
                merged.Add(item);
            }
            else
            {
                var before = merged[found];
                var sum = before with { TextEncoderScale = before.TextEncoderScale + item.TextEncoderScale, UNetScale = before.UNetScale + item.UNetScale };
                // Two finite multipliers can add up past float's range: the merged weights would be infinite, the image NaN.
                if (!float.IsFinite(sum.TextEncoderScale) || !float.IsFinite(sum.UNetScale))
                {
                    throw new ArgumentException($"The LoRA '{item.Name}' is asked for more than once, and its multipliers add up to a number that is not finite.", nameof(items));
                }
                merged[found] = sum;
            }
        }
        return merged.Count == 0 ? Empty : new LoraSet(merged.ToArray());
    }

    public static LoraSet Of(params LoraWeight[] items) => Of((IEnumerable<LoraWeight>)items);

    /// <summary>This set followed by <paramref name="other"/> (shared names add up).</summary>
    public LoraSet With(LoraSet other) => other.IsEmpty ? this : IsEmpty ? other : Of(_items.Concat(other._items));

    public IReadOnlyList<LoraWeight> Items => _items;

    public bool IsEmpty => _items.Length == 0;

    /// <summary>A stable text form of the set (names sorted): usable as a cache or shard-grouping key.</summary>
    public string Key => _key;

    public bool Equals(LoraSet? other) => other is not null && other._key == _key;

    public override bool Equals(object? obj) => Equals(obj as LoraSet);

    public override int GetHashCode() => _key.GetHashCode(StringComparison.Ordinal);

    /// <summary>The set as A1111 prompt tags, e.g. <c>&lt;lora:a:0.8&gt; &lt;lora:b:0.5&gt;</c>.</summary>
    public override string ToString()
    {
        var text = new StringBuilder();
        foreach (var item in _items)
        {
            if (text.Length > 0) text.Append(' ');
            text.Append(item);
        }
        return text.ToString();
    }
}
