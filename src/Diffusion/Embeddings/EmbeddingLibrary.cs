using RenderFarm.Diffusion.SafeTensors;

namespace RenderFarm.Diffusion.Embeddings;

/// <summary>
/// The textual-inversion embeddings a worker offers: every <c>.safetensors</c> under a folder, by file name without
/// extension (the word a prompt uses). A pipeline loaded with the library adds every embedding that fits its text
/// encoders (hidden sizes; SDXL needs clip_l and clip_g) as new tokens; the rest are reported and stay ordinary words.
/// </summary>
public sealed class EmbeddingLibrary(string directory)
{
    private readonly SafeTensorsDirectory<TextualInversion> _files = new(directory, "embedding", (path, name) => TextualInversion.Open(path, name));

    public string Directory => _files.Directory;

    public IReadOnlyList<string> Names => _files.Names;

    public bool Contains(string name) => _files.Contains(name);

    public TextualInversion Get(string name) => _files.Get(name);
}
