using RenderFarm.Protocol;

namespace RenderFarm.Client.Watch;

/// <summary>
/// <c>farm watch --previews DIR</c>: keeps the latest live preview of each image in a folder, as <c>NNNNN.png</c> (the
/// image index), each replaced whole (written beside it, then renamed over it) so a viewer never reads half a file.
/// </summary>
public sealed class PreviewFolder
{
    private readonly string _directory;

    public PreviewFolder(string directory)
    {
        _directory = Path.GetFullPath(directory);
        Directory.CreateDirectory(_directory);
    }

    /// <summary>Previews written so far.</summary>
    public int Written { get; private set; }

    public string PathOf(uint index) => Path.Combine(_directory, $"{index:D5}.png");

    public void Write(ImagePreview preview)
    {
        var path = PathOf(preview.Index);
        var part = path + ".part";
        File.WriteAllBytes(part, preview.Png.ToByteArray());
        File.Move(part, path, overwrite: true);
        Written++;
    }
}
