using System.Globalization;
using System.Text;

namespace RenderFarm.Diffusion.Imaging;

/// <summary>The A1111 "parameters" text SD tools read from a PNG.</summary>
public static class GenerationParameters
{
    public const string Keyword = "parameters";

    /// <summary>
    /// <c>{prompt}\nNegative prompt: {neg}\nSteps: {n}, Sampler: {name}, CFG scale: {g}, Seed: {seed}, Size: {W}x{H}, Model: {model}</c>;
    /// the negative-prompt line is left out when it is empty, the Model field when no model name is known;
    /// <paramref name="extra"/> fields ("Denoising strength", "Clip skip", …) follow in order.
    /// </summary>
    public static string Format(string prompt, string negativePrompt, int steps, string sampler, float guidanceScale, long seed, int width, int height, string modelName,
        IEnumerable<KeyValuePair<string, string>>? extra = null)
    {
        var sb = new StringBuilder();
        sb.Append(prompt).Append('\n');
        if (!string.IsNullOrEmpty(negativePrompt))
        {
            sb.Append("Negative prompt: ").Append(negativePrompt).Append('\n');
        }
        sb.Append(CultureInfo.InvariantCulture,
            $"Steps: {steps}, Sampler: {sampler}, CFG scale: {guidanceScale.ToString(CultureInfo.InvariantCulture)}, Seed: {seed}, Size: {width}x{height}");
        if (!string.IsNullOrEmpty(modelName))
        {
            sb.Append(", Model: ").Append(modelName);
        }
        foreach (var (key, value) in extra ?? [])
        {
            sb.Append(", ").Append(key).Append(": ").Append(value);
        }
        return sb.ToString();
    }
}
