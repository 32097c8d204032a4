using RenderFarm.Imaging;
using RenderFarm.Shared;

namespace RenderFarm.Client.Submit;

/// <summary>Checks an init image or mask before anything is sent: it exists, is readable and looks like PNG or JPEG.</summary>
public static class InputImageFile
{
    /// <summary>The file's length in bytes, or null with the reason it cannot be used. Reads only its first bytes.</summary>
    public static long? Probe(string path, out string? problem)
    {
        problem = null;
        if (Directory.Exists(path))
        {
            problem = $"{path} is a directory, not an image";
            return null;
        }

        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
            Span<byte> head = stackalloc byte[ImageHeader.SignatureLength];
            var read = stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
            if (read == 0)
            {
                problem = $"{path} is empty";
                return null;
            }

            if (!ImageHeader.HasSignature(head[..read]))
            {
                problem = $"{path} is not a PNG or JPEG image";
                return null;
            }

            return stream.Length;
        }
        catch (FileNotFoundException)
        {
            problem = $"{path}: no such file";
        }
        catch (DirectoryNotFoundException)
        {
            problem = $"{path}: no such file";
        }
        catch (UnauthorizedAccessException)
        {
            problem = $"{path}: permission denied";
        }
        catch (IOException e)
        {
            problem = $"{path}: {e.Message}";
        }
        catch (NotSupportedException)
        {
            problem = $"{path} is not a regular file";
        }

        return null;
    }
}
