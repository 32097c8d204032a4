namespace RenderFarm.Client.Prompts;

/// <summary>How a prompt file is laid out.</summary>
public enum PromptFileFormat
{
    /// <summary>One prompt per line; blank lines and lines starting with <c>#</c> are skipped.</summary>
    Text,

    /// <summary>
    /// One JSON object per line: <c>prompt</c>, optional <c>negative</c>, <c>seed</c> or <c>seeds</c>, per-prompt
    /// settings, <c>init_image</c>, <c>mask</c> and <c>strength</c>.
    /// </summary>
    JsonLines,

    /// <summary>RFC 4180 CSV with a header row naming the same columns as the JSON Lines fields.</summary>
    Csv,
}
