using RenderFarm.Client.Prompts;
using RenderFarm.GenerationRules;

namespace RenderFarm.Client.Submit;

/// <summary>
/// The validation pass's view of a batch's init images, masks and control images: each distinct file is probed once (the line of
/// its first use names it in errors) and counted, without reading its bytes (but for control images whose Canny edges
/// the client makes: those are decoded). Holds only the sets of paths.
/// </summary>
public sealed class InputImageCensus(InputImageDefaults defaults, string source)
{
    private readonly HashSet<string> _seen = new(StringComparer.Ordinal);
    private readonly HashSet<string> _decoded = new(StringComparer.Ordinal);

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
            if (controlNet.Module == ControlNetSpec.Canny && _decoded.Add(controlNet.Image))
            {
                // Its edges are made here, from every pixel: an image that does not decode must fail the dry run too.
                var check = Imaging.ImageDecoder.Check(File.ReadAllBytes(controlNet.Image), long.MaxValue);
                if (!check.Decodes)
                {
                    throw new PromptFileException(source, entry.Line, $"control image {controlNet.Image} could not be decoded: {check.Error}");
                }
            }
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
