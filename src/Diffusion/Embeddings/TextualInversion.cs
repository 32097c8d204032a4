using RenderFarm.Diffusion.SafeTensors;

namespace RenderFarm.Diffusion.Embeddings;

/// <summary>
/// A textual-inversion embedding (<c>.safetensors</c>): one or more token vectors per text encoder, used in prompts by
/// name. AUTOMATIC1111's SD 1.x/2.x files hold <c>emb_params</c> [n, hidden]; SDXL files hold <c>clip_l</c> [n, 768]
/// (first encoder) and <c>clip_g</c> [n, 1280] (second); a diffusers <c>learned_embeds.safetensors</c> holds one tensor
/// named after its token ([hidden] or [n, hidden]). Pickled <c>.pt</c>/<c>.bin</c> files are not read.
/// </summary>
public sealed class TextualInversion
{
    private TextualInversion(string name, string path, IReadOnlyList<float[,]?> vectors)
    {
        Name = name;
        Path = path;
        Vectors = vectors;
    }

    /// <summary>The word prompts use: the file name without its extension.</summary>
    public string Name { get; }

    public string Path { get; }

    /// <summary>Per text encoder (0: text_encoder / clip_l, 1: text_encoder_2 / clip_g), the vectors [n, hidden], or null when the file has none for it.</summary>
    public IReadOnlyList<float[,]?> Vectors { get; }

    /// <summary>Tokens the embedding takes in a prompt (its vector count).</summary>
    public int TokenCount => Vectors.First(v => v is not null)!.GetLength(0);

    public static TextualInversion Open(string path, string? name = null)
    {
        using var file = SafeTensorsFile.Open(path);
        var tensors = file.Tensors;
        float[,]? first, second = null;
        if (tensors.ContainsKey("clip_l") || tensors.ContainsKey("clip_g"))
        {
            first = tensors.ContainsKey("clip_l") ? Read(file, "clip_l") : null;
            second = tensors.ContainsKey("clip_g") ? Read(file, "clip_g") : null;
            if (first is not null && second is not null && first.GetLength(0) != second.GetLength(0))
            {
                throw new InvalidDataException($"{path}: clip_l has {first.GetLength(0)} vectors but clip_g {second.GetLength(0)}.");
            }
        }
        else if (tensors.ContainsKey("emb_params"))
        {
            first = Read(file, "emb_params");
        }
        else if (tensors.Count == 1)
        {
            first = Read(file, tensors.Keys.Single());
        }
        else
        {
            throw new InvalidDataException(
                $"{path} is not a textual-inversion embedding: expected emb_params, clip_l/clip_g or a single tensor, found {string.Join(", ", file.Names.Take(10))}.");
        }
        return new TextualInversion(name ?? System.IO.Path.GetFileNameWithoutExtension(path), System.IO.Path.GetFullPath(path), [first, second]);
    }

    private static float[,] Read(SafeTensorsFile file, string key)
    {
        var info = file.Info(key);
        var shape = info.Shape;
        (int rows, int width) = shape.Length switch
        {
            1 => (1, checked((int)shape[0])),
            2 => (checked((int)shape[0]), checked((int)shape[1])),
            _ => throw new InvalidDataException($"{file.Path}: '{key}' has shape [{string.Join(", ", shape)}]; an embedding is [vectors, hidden]."),
        };
        if (rows == 0 || width == 0)
        {
            throw new InvalidDataException($"{file.Path}: '{key}' is empty.");
        }
        var values = file.ReadFloats(key);
        var vectors = new float[rows, width];
        Buffer.BlockCopy(values, 0, vectors, 0, values.Length * sizeof(float));
        return vectors;
    }
}
