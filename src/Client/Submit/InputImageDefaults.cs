using RenderFarm.Client.Prompts;
using RenderFarm.GenerationRules;

namespace RenderFarm.Client.Submit;

/// <summary>
/// <c>--init-image</c>, <c>--mask</c> and <c>--strength</c>: what a prompt gets when it brings none of its own. The
/// default strength travels once, in the job header; the default images are named by each prompt that uses them.
/// </summary>
public sealed record InputImageDefaults(string? InitImage = null, string? Mask = null, float? Strength = null)
{
    public static readonly InputImageDefaults None = new();

    /// <summary><c>--control</c>: the ControlNets of every prompt that names none of its own (image paths full).</summary>
    public IReadOnlyList<ControlNetSpec> ControlNets { get; init; } = [];

    /// <summary>The ControlNets a prompt renders with: its own (its <c>control</c> field), else <c>--control</c>'s.</summary>
    public IReadOnlyList<ControlNetSpec> ControlNetsFor(PromptEntry entry) => entry.ControlNets ?? ControlNets;

    /// <summary>
    /// The images a prompt renders from: its own, else these defaults. A mask (own or default) applies only with an
    /// init image; a prompt's own mask or strength without any init image is an error on its line. Null: text-to-image.
    /// </summary>
    public PromptImages? For(PromptEntry entry, string source)
    {
        var own = entry.Images;
        var init = own?.InitImage ?? InitImage;
        if (init is null)
        {
            if (own?.Mask is not null)
            {
                throw new PromptFileException(source, entry.Line,
                    "a mask needs an init image: add an init_image to this prompt or give --init-image");
            }

            if (own?.Strength is not null)
            {
                throw new PromptFileException(source, entry.Line,
                    "'strength' applies only to prompts with an init image: add an init_image to this prompt or give --init-image");
            }

            return null;
        }

        // The default strength is the header's; only a prompt's own is sent with it.
        return new PromptImages(init, own?.Mask ?? Mask, own?.Strength);
    }
}
