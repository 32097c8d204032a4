using System.Collections.Concurrent;

namespace RenderFarm.Diffusion.SafeTensors;

/// <summary>
/// The <c>.safetensors</c> files of a folder (and its subfolders), by name — the file name without its extension —
/// each read once, on first use, by <paramref name="read"/> and kept. The listing is taken when constructed: files
/// added later need a new instance (a worker restart). Two files with one name make that name ambiguous.
/// </summary>
internal sealed class SafeTensorsDirectory<T>(string directory, string kind, Func<string, string, T> read) where T : class
{
    private readonly Dictionary<string, string[]> _files = System.IO.Directory.Exists(directory)
        ? System.IO.Directory.EnumerateFiles(directory, "*.safetensors", SearchOption.AllDirectories)
            .GroupBy(f => Path.GetFileNameWithoutExtension(f), StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.Order(StringComparer.Ordinal).ToArray(), StringComparer.Ordinal)
        : throw new DirectoryNotFoundException($"The {kind} directory '{directory}' does not exist.");

    private readonly ConcurrentDictionary<string, Lazy<T>> _loaded = new(StringComparer.Ordinal);

    public string Directory { get; } = Path.GetFullPath(directory);

    public IReadOnlyList<string> Names => _files.Keys.Order(StringComparer.Ordinal).ToArray();

    public bool Contains(string name) => _files.ContainsKey(name);

    /// <summary>The file called <paramref name="name"/>, read.</summary>
    /// <exception cref="ArgumentException">No such name (the message lists a few that exist), or an ambiguous one.</exception>
    public T Get(string name)
    {
        if (!_files.TryGetValue(name, out var paths))
        {
            var known = Names;
            throw new ArgumentException(
                $"Unknown {kind} '{name}': {Directory} has no {name}.safetensors" +
                (known.Count == 0 ? " (it has none)." : $" (it has {string.Join(", ", known.Take(20))}{(known.Count > 20 ? ", …" : "")})."));
        }
        if (paths.Length > 1)
        {
            throw new ArgumentException($"The {kind} name '{name}' is ambiguous: {string.Join(" and ", paths)}.");
        }
        return _loaded.GetOrAdd(name, n => new Lazy<T>(() => read(paths[0], n))).Value;
    }
}
