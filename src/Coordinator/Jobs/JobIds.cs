using System.Security.Cryptography;
using System.Text.RegularExpressions;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>Job ids: 16 random lower-case base-32 characters. Anything else is not a job we made.</summary>
public static partial class JobIds
{
    private const string Alphabet = "abcdefghijklmnopqrstuvwxyz234567";

    public static string New()
    {
        Span<byte> bytes = stackalloc byte[16];
        RandomNumberGenerator.Fill(bytes);
        return string.Create(16, bytes.ToArray(), static (chars, b) =>
        {
            for (var i = 0; i < chars.Length; i++) chars[i] = Alphabet[b[i] & 31];
        });
    }

    public static bool IsWellFormed(string? id) => id is not null && Pattern().IsMatch(id);

    [GeneratedRegex("^[a-z2-7]{16}$")]
    private static partial Regex Pattern();
}
