using RenderFarm.Client.Prompts;

namespace RenderFarm.Client.Submit;

/// <summary>
/// The validation pass's view of a batch's init images, masks and control images: each distinct file is probed once (the line of
/// its first use names it in errors) and counted, without reading its bytes. Holds only the set of paths.
/// </summary>
public sealed class InputImageCensus(InputImageDefaults defaults, string source)
{
    private readonly HashSet<string> _seen = new(StringComparer.Ordinal);

    /// <summary>Distinct files the prompts use.</summary>
    public int Files => _seen.Count;

    /// <summary>Their total size: what the submission will send (less, when two files have the same bytes).</summary>
    public long Bytes { get; private set; }

    /// <summary>Prompts that render from an init image (img2img or inpainting).</summary>
    public long PromptsWithInitImage { get; private set; }

    public void Add(PromptEntry entry)
    {
        foreach (var controlNet in defaults.ControlNetsFor(entry))
        {
            Count(controlNet.Image, "control image", entry.Line);
        }

        if (defaults.For(entry, source) is not { } images)
        {
            return;
        }

        PromptsWithInitImage++;
        Count(images.InitImage!, "init image", entry.Line);
        if (images.Mask is { } mask)
        {
            Count(mask, "mask", entry.Line);
        }
    }

    private void Count(string path, string what, int line)
    {
        if (!_seen.Add(path))
        {
            return;
        }

        Bytes += InputImageFile.Probe(path, out var problem)
                 ?? throw new PromptFileException(source, line, $"{what} {problem}");
    }
}
