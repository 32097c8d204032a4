namespace RenderFarm.Diffusion.ControlNets;

/// <summary>
/// The ControlNets a worker offers: every folder under <see cref="Directory"/> with a <c>model.onnx</c> (and its
/// external data), by folder name (<c>/models/controlnets/canny/model.onnx</c> is <c>canny</c>). A ControlNet is loaded
/// by the first request that names it and kept. The listing is taken when the library is created.
/// </summary>
public sealed class ControlNetLibrary
{
    public const string ModelFile = "model.onnx";

    public ControlNetLibrary(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        Directory = Path.GetFullPath(directory);
        Names = System.IO.Directory.Exists(Directory)
            ? System.IO.Directory.EnumerateDirectories(Directory)
                .Where(d => File.Exists(Path.Combine(d, ModelFile)))
                .Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal).ToArray()
            : [];
    }

    public string Directory { get; }

    /// <summary>Every ControlNet name, sorted.</summary>
    public IReadOnlyList<string> Names { get; }

    public bool Contains(string name) => Names.Contains(name, StringComparer.Ordinal);

    /// <summary>
    /// Whether the ControlNet <paramref name="name"/> is an SDXL one: it takes text_embeds (read from its graph's inputs
    /// with a bare session; the weights stay mapped).
    /// </summary>
    public bool IsSdxl(string name) =>
        Models.OnnxComponent.ReadInputs(Path.Combine(Directory, name, ModelFile)).ContainsKey("text_embeds");
}
