using RenderFarm.Client.Cli;
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
        try
        {
            File.WriteAllBytes(part, preview.Png.ToByteArray());
            File.Move(part, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A full disk or a folder taken away is this machine's failure, not the connection's: an IOException left
            // as it is would read as a lost stream and reconnect (and fail again) until the watch gave up.
            try
            {
                File.Delete(part);
            }
            catch (Exception cleanup) when (cleanup is IOException or UnauthorizedAccessException)
            {
                // the folder is gone or read-only: nothing of ours is left in it either way
            }

            throw new FarmOperationException($"cannot write the preview {path}: {e.Message}");
        }

        Written++;
    }
}
