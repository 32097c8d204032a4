using Microsoft.ML.OnnxRuntime;
using RenderFarm.Diffusion.Generation;
using RenderFarm.Diffusion.Models;
using RenderFarm.Diffusion.Tokenization;

namespace RenderFarm.Diffusion.Prompts;

/// <summary>What the UNet is conditioned on: hidden states [rows, L, H] and, for SDXL, pooled embeddings [rows, P].</summary>
internal sealed record PromptEmbeddings(float[] Hidden, int SequenceLength, int HiddenSize, float[]? Pooled, int PooledSize);

/// <summary>One tokenizer + text encoder pair; SDXL has two.</summary>
internal sealed class TextEncoderStage(ClipTokenizer tokenizer, TextEncoder encoder, double layerNormEpsilon) : IDisposable
{
    /// <summary>This stage with another encoder of the same architecture (a LoRA variant's): same tokenizer, same tokens.</summary>
    public TextEncoderStage WithEncoder(TextEncoder other) => new(Tokenizer, other, layerNormEpsilon, _tokenized);

    private TextEncoderStage(ClipTokenizer tokenizer, TextEncoder encoder, double layerNormEpsilon,
        System.Collections.Concurrent.ConcurrentDictionary<string, TokenizedPrompt> tokenized) : this(tokenizer, encoder, layerNormEpsilon)
    {
        _tokenized = tokenized;
    }

    /// <summary>Prompts whose tokens are kept: a farm renders the same negative prompt, and each prompt for several
    /// seeds, over and over. Past this many the cache starts again.</summary>
    internal const int TokenCacheSize = 1024;

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, TokenizedPrompt> _tokenized = new(StringComparer.Ordinal);
    private FinalLayerNorm? _finalNorm;

    public ClipTokenizer Tokenizer { get; } = tokenizer;

    public TextEncoder Encoder { get; } = encoder;

    /// <summary>The encoder's final layer norm, fitted once from the empty prompt (see <see cref="FinalLayerNorm"/>).</summary>
    public FinalLayerNorm FinalNorm(RunOptions runOptions)
    {
        if (_finalNorm is null)
        {
            var ids = Tokenizer.Encode("");
            var outputs = Encoder.Run(ids, 1, runOptions, [Encoder.HiddenStateNames[^1], Encoder.LastHiddenName]);
            _finalNorm = FinalLayerNorm.Fit(outputs[0].Values, outputs[1].Values, (int)outputs[0].RowShape[^1], layerNormEpsilon);
        }
        return _finalNorm;
    }

    /// <summary><paramref name="prompt"/> as weighted tokens (immutable, so shared between requests).</summary>
    public TokenizedPrompt Tokenize(string prompt)
    {
        if (_tokenized.TryGetValue(prompt, out var cached))
        {
            return cached;
        }
        var tokens = TokenizedPrompt.Create(Tokenizer, prompt);
        if (_tokenized.Count >= TokenCacheSize)
        {
            _tokenized.Clear();
        }
        _tokenized[prompt] = tokens;
        return tokens;
    }

    public void Dispose() => Encoder.Dispose();
}

/// <summary>
/// Turns prompts into UNet conditioning: A1111 attention weights, 75-token windows (every prompt of a request padded
/// to the same number of windows, their encodings concatenated along the sequence), CLIP skip, and for SDXL both
/// encoders' penultimate states concatenated along the hidden axis plus the second encoder's pooled text_embeds
/// (of each prompt's first window). <paramref name="maxWindows"/>: the most windows the encoders take (TensorRT
/// engines' profile), null for any.
/// </summary>
internal sealed class PromptEncoder(IReadOnlyList<TextEncoderStage> stages, bool penultimateByDefault, int? maxWindows = null) : IDisposable
{
    public IReadOnlyList<TextEncoderStage> Stages => stages;

    /// <summary>The most 75-token windows a prompt may take here, or null for any.</summary>
    public int? MaxWindows => maxWindows;

    /// <summary>Whether the UNet is conditioned on the penultimate layer by default (SDXL).</summary>
    public bool PenultimateByDefault => penultimateByDefault;

    /// <summary>Encodes <paramref name="prompts"/> (one row each) with every stage.</summary>
    /// <remarks>With a <paramref name="workspace"/>, the returned states may live in its arrays (valid until its next use).</remarks>
    public PromptEmbeddings Encode(IReadOnlyList<string> prompts, int clipSkip, bool needPooled, RunOptions runOptions, Workspace? workspace = null)
    {
        var tokenized = stages.Select(s => prompts.Select(s.Tokenize).ToArray()).ToArray();
        int windows = stages.Select((s, i) => tokenized[i].Max(t => t.WindowCount(s.Tokenizer))).Max();
        if (windows > maxWindows)
        {
            throw new ArgumentException(
                $"A prompt of this request takes {windows} windows of 75 tokens; this worker's TensorRT engines take at most {maxWindows} ({maxWindows * 75} tokens).");
        }
        int rows = prompts.Count;

        var hiddens = new List<(float[] Values, int Hidden)>();
        float[]? pooled = null;
        int pooledSize = 0, sequence = 0;
        for (int s = 0; s < stages.Count; s++)
        {
            var stage = stages[s];
            int length = stage.Tokenizer.MaxLength;
            var ids = new int[rows * windows * length];
            var weights = new float[ids.Length];
            for (int r = 0; r < rows; r++)
            {
                tokenized[s][r].Write(stage.Tokenizer, windows, ids.AsSpan(r * windows * length, windows * length), weights.AsSpan(r * windows * length, windows * length));
            }
            var (output, normalise) = Layer(stage.Encoder, clipSkip);
            bool pooledHere = needPooled && s == stages.Count - 1;
            if (pooledHere && stage.Encoder.PooledName is null)
            {
                throw new InvalidOperationException($"The {stage.Encoder.Name} has no pooled output (text_embeds) for the unet.");
            }
            var results = stage.Encoder.Run(ids, rows * windows, runOptions, pooledHere ? [output, stage.Encoder.PooledName!] : [output], workspace);
            var hidden = results[0].Values;
            int hiddenSize = (int)results[0].RowShape[^1];
            if (normalise)
            {
                stage.FinalNorm(runOptions).Apply(hidden);
            }
            if (tokenized[s].Any(t => t.IsWeighted))
            {
                for (int w = 0; w < rows * windows; w++)
                {
                    EmbeddingWeights.Apply(hidden.AsSpan(w * length * hiddenSize, length * hiddenSize), weights.AsSpan(w * length, length), hiddenSize);
                }
            }
            hiddens.Add((hidden, hiddenSize));
            sequence = windows * length;
            if (pooledHere)
            {
                pooledSize = results[1].Values.Length / (rows * windows);
                pooled = new float[rows * pooledSize];
                for (int r = 0; r < rows; r++)
                {
                    results[1].Values.AsSpan(r * windows * pooledSize, pooledSize).CopyTo(pooled.AsSpan(r * pooledSize));
                }
            }
        }
        var (states, total) = Concatenate(hiddens, rows * sequence);
        return new PromptEmbeddings(states, sequence, total, pooled, pooledSize);
    }

    /// <summary>
    /// The output a CLIP skip selects: the last layer's normalised state by default; SDXL's encoders the layer before
    /// it, unnormalised; skip k one layer further back each, through the final layer norm where the default has it.
    /// </summary>
    private (string Output, bool Normalise) Layer(TextEncoder encoder, int clipSkip)
    {
        int fromEnd = clipSkip - 1 + (penultimateByDefault ? 1 : 0);
        bool normalise = !penultimateByDefault;
        if (fromEnd == 0 && normalise)
        {
            return (encoder.LastHiddenName, false);
        }
        var states = encoder.HiddenStateNames;
        if (states.Count == 0)
        {
            throw new ArgumentException(
                $"ClipSkip {clipSkip} needs per-layer hidden states (hidden_states.N outputs), which the {encoder.Name} export ({encoder.Path}) does not have.",
                nameof(GenerationRequest.ClipSkip));
        }
        int index = states.Count - 1 - fromEnd;
        if (index < 0)
        {
            throw new ArgumentException(
                $"ClipSkip {clipSkip} reaches past the {encoder.Name}'s first hidden state (it has {states.Count - 1} layers).", nameof(GenerationRequest.ClipSkip));
        }
        return (states[index], normalise);
    }

    /// <summary>Concatenates [tokens, Hᵢ] blocks along the hidden axis.</summary>
    private static (float[] States, int Hidden) Concatenate(List<(float[] Values, int Hidden)> parts, int tokens)
    {
        if (parts.Count == 1)
        {
            return parts[0];
        }
        int total = parts.Sum(p => p.Hidden);
        var states = new float[tokens * total];
        for (int t = 0; t < tokens; t++)
        {
            int offset = 0;
            foreach (var (values, hidden) in parts)
            {
                values.AsSpan(t * hidden, hidden).CopyTo(states.AsSpan(t * total + offset));
                offset += hidden;
            }
        }
        return (states, total);
    }

    public void Dispose()
    {
        foreach (var stage in stages) stage.Dispose();
    }
}
