using System.Globalization;
using System.Text.RegularExpressions;

namespace RenderFarm.Diffusion.Prompts;

/// <summary>
/// AUTOMATIC1111's prompt attention syntax (modules/prompt_parser.py <c>parse_prompt_attention</c>):
/// <c>(text)</c> multiplies the weight by 1.1, <c>[text]</c> divides it by 1.1, <c>(text:1.3)</c> multiplies it by 1.3;
/// nesting multiplies; <c>\(</c> <c>\)</c> <c>\[</c> <c>\]</c> <c>\\</c> are literals; an unclosed bracket applies to
/// the rest of the prompt; a stray closing bracket is text. Neighbouring runs of equal weight are merged.
/// (A1111's <c>BREAK</c> keyword is not interpreted.)
/// </summary>
public static class PromptParser
{
    public const double RoundBracketMultiplier = 1.1;
    public const double SquareBracketMultiplier = 1 / 1.1;

    private static readonly Regex Attention = new(
        @"\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:",
        RegexOptions.Compiled | RegexOptions.CultureInvariant);

    public static IReadOnlyList<WeightedText> Parse(string prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var runs = new List<(string Text, double Weight)>();
        var round = new Stack<int>();
        var square = new Stack<int>();

        foreach (Match m in Attention.Matches(prompt))
        {
            string text = m.Value;
            var weight = m.Groups[1];
            if (text.StartsWith('\\'))
            {
                runs.Add((text.Length > 1 ? text[1..] : text, 1.0));
            }
            else if (text == "(")
            {
                round.Push(runs.Count);
            }
            else if (text == "[")
            {
                square.Push(runs.Count);
            }
            else if (weight.Success && round.Count > 0
                && double.TryParse(weight.Value, NumberStyles.Float, CultureInfo.InvariantCulture, out var w))
            {
                Multiply(round.Pop(), w);
            }
            else if (text == ")" && round.Count > 0)
            {
                Multiply(round.Pop(), RoundBracketMultiplier);
            }
            else if (text == "]" && square.Count > 0)
            {
                Multiply(square.Pop(), SquareBracketMultiplier);
            }
            else
            {
                runs.Add((text, 1.0));
            }
        }
        // A1111 applies the unclosed brackets in the order they were opened.
        foreach (var start in round.Reverse()) Multiply(start, RoundBracketMultiplier);
        foreach (var start in square.Reverse()) Multiply(start, SquareBracketMultiplier);

        if (runs.Count == 0)
        {
            return [new WeightedText("", 1f)];
        }
        var merged = new List<(string Text, double Weight)>();
        foreach (var run in runs)
        {
            if (merged.Count > 0 && merged[^1].Weight == run.Weight)
            {
                merged[^1] = (merged[^1].Text + run.Text, run.Weight);
            }
            else
            {
                merged.Add(run);
            }
        }
        return merged.Select(r => new WeightedText(r.Text, (float)r.Weight)).ToArray();

        void Multiply(int start, double multiplier)
        {
            for (int p = start; p < runs.Count; p++)
            {
                runs[p] = (runs[p].Text, runs[p].Weight * multiplier);
            }
        }
    }
}
