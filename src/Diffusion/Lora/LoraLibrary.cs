using RenderFarm.Diffusion.SafeTensors;

namespace RenderFarm.Diffusion.Lora;

/// <summary>
/// The LoRA files a worker offers: every <c>.safetensors</c> under a folder, by file name without extension (what
/// <c>&lt;lora:name:0.8&gt;</c> names). Each file's layers and hash are read once, on first use, and kept; share one
/// library between the pipelines of a process. The listing is taken when the library is created.
/// </summary>
public sealed class LoraLibrary(string directory)
{
    private readonly SafeTensorsDirectory<LoraFile> _files = new(directory, "LoRA", (path, name) => LoraFile.Open(path, name));

    public string Directory => _files.Directory;

    /// <summary>Every LoRA name, sorted.</summary>
    public IReadOnlyList<string> Names => _files.Names;

    public bool Contains(string name) => _files.Contains(name);

    /// <summary>The LoRA called <paramref name="name"/>, read (header, layers, hash) on first use.</summary>
    /// <exception cref="ArgumentException">No such LoRA, or two files with that name.</exception>
    /// <exception cref="InvalidDataException">The file is not a LoRA this pipeline reads.</exception>
    public LoraFile Get(string name) => _files.Get(name);
}
