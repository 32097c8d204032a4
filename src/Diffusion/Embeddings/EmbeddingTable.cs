using RenderFarm.Diffusion.Weights;

namespace RenderFarm.Diffusion.Embeddings;

/// <summary>
/// Textual-inversion embeddings added to one text encoder: the token embedding table extended by the embeddings'
/// vectors (rows V, V+1, … after the model's V rows, in the order given) and, per embedding name, the token ids its
/// word becomes. The table keeps its element type; the first V rows are the model's own, so prompts without
/// embedding words encode exactly as before.
/// </summary>
internal sealed record EmbeddingTable(ReplacedWeight Table, IReadOnlyDictionary<string, int[]> Tokens)
{
    /// <param name="reader">Reads the initializer's values from the encoder's model file.</param>
    /// <param name="table">The encoder's token embedding initializer [V, hidden].</param>
    /// <param name="embeddings">The embeddings with their vectors for this encoder ([n, hidden] each).</param>
    public static EmbeddingTable Build(WeightReader reader, OnnxInitializer table, IReadOnlyList<(string Name, float[,] Vectors)> embeddings)
    {
        long rows = table.Dims[0], hidden = table.Dims[1];
        int added = embeddings.Sum(e => e.Vectors.GetLength(0));
        var values = new float[checked((int)((rows + added) * hidden))];
        reader.ReadFloats(table, values.AsSpan(0, checked((int)(rows * hidden))));
        var tokens = new Dictionary<string, int[]>(StringComparer.Ordinal);
        int next = checked((int)rows);
        foreach (var (name, vectors) in embeddings)
        {
            int count = vectors.GetLength(0);
            Buffer.BlockCopy(vectors, 0, values, (int)((long)next * hidden * sizeof(float)), count * (int)hidden * sizeof(float));
            tokens[name] = Enumerable.Range(next, count).ToArray();
            next += count;
        }
        return new EmbeddingTable(new ReplacedWeight(table, [rows + added, hidden], values), tokens);
    }
}
