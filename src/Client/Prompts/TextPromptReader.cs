using System.Runtime.CompilerServices;

namespace RenderFarm.Client.Prompts;

/// <summary>Plain text: one prompt per line, trimmed; blank lines and lines starting with <c>#</c> are skipped.</summary>
public static class TextPromptReader
{
    public static async IAsyncEnumerable<PromptEntry> ReadAsync(
        TextReader reader, string source, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var lineNumber = 0;
        while (await reader.ReadLineAsync(cancellationToken) is { } line)
        {
            lineNumber++;
            var prompt = line.Trim();
            if (prompt.Length == 0 || prompt[0] == '#')
            {
                continue;
            }

            var entry = new PromptEntryBuilder(source, lineNumber, baseDirectory: null);
            entry.SetPrompt(prompt);
            yield return entry.Build();
        }
    }
}
