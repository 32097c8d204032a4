using RenderFarm.GenerationRules;
using RenderFarm.Diffusion.Tokenization;

namespace RenderFarm.Diffusion.Prompts;

/// <summary>
/// A prompt as CLIP tokens with per-token attention weights (from <see cref="PromptParser"/>; each run is tokenized
/// on its own, as AUTOMATIC1111 does), laid out in windows of [BOS] + up to 75 tokens + [EOS] + padding.
/// </summary>
internal sealed class TokenizedPrompt
{
    private readonly int[] _tokens;
    private readonly float[] _weights;

    private TokenizedPrompt(int[] tokens, float[] weights)
    {
        _tokens = tokens;
        _weights = weights;
        IsWeighted = weights.Any(w => w != 1f);
    }

    public int TokenCount => _tokens.Length;

    /// <summary>True when some token's weight is not 1 (the embeddings then need re-weighting).</summary>
    public bool IsWeighted { get; }

    public static TokenizedPrompt Create(ClipTokenizer tokenizer, string prompt)
    {
        var tokens = new List<int>();
        var weights = new List<float>();
        // A1111's LoRA tags are for the pipeline, not the encoder: they are removed before the attention syntax is read.
        foreach (var run in PromptParser.Parse(LoraPrompt.Parse(prompt).Text))
        {
            var ids = tokenizer.EncodeTokens(run.Text);
            tokens.AddRange(ids);
            weights.AddRange(Enumerable.Repeat(run.Weight, ids.Count));
        }
        return new TokenizedPrompt(tokens.ToArray(), weights.ToArray());
    }

    /// <summary>Windows needed for this prompt: at least one.</summary>
    public int WindowCount(ClipTokenizer tokenizer) => Math.Max(1, (TokenCount + tokenizer.WindowTokens - 1) / tokenizer.WindowTokens);

    /// <summary>
    /// Writes <paramref name="windows"/> windows of ids and weights (MaxLength each; BOS, EOS and padding weigh 1);
    /// windows past the prompt's end are empty windows, as for a padded negative prompt.
    /// </summary>
    public void Write(ClipTokenizer tokenizer, int windows, Span<int> ids, Span<float> weights)
    {
        int length = tokenizer.MaxLength, per = tokenizer.WindowTokens;
        weights.Fill(1f);
        for (int w = 0; w < windows; w++)
        {
            int start = Math.Min(w * per, TokenCount);
            int count = Math.Min(per, TokenCount - start);
            tokenizer.WriteWindow(_tokens.AsSpan(start, count), ids.Slice(w * length, length));
            _weights.AsSpan(start, count).CopyTo(weights.Slice(w * length + 1, count));
        }
    }
}
