using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace RenderFarm.Coordinator.Storage;

/// <summary>
/// Signs and checks the upload URLs of the directory store (<see cref="FileSystemStorageOptions.UploadUrl"/>): each
/// names one image, the sha256 and size of the only bytes it may carry, and when it expires, under an HMAC-SHA256 of
/// all of them. Stateless, so any replica with the key takes any replica's URL.
/// </summary>
public sealed class UploadSignature(byte[] key, TimeProvider time)
{
    /// <summary>The route the coordinator takes uploads on (<see cref="FileSystemUploadEndpoint"/>).</summary>
    public const string RoutePrefix = "/uploads";

    public static UploadSignature FromOptions(FileSystemStorageOptions options, TimeProvider time) =>
        new(options.UploadKey is { Length: > 0 } key ? Encoding.UTF8.GetBytes(key) : RandomNumberGenerator.GetBytes(32), time);

    /// <summary>The path and query of an upload of exactly these bytes as the image, valid for <paramref name="ttl"/>.</summary>
    public string PathAndQuery(string jobId, uint index, ReadOnlySpan<byte> sha256, long sizeBytes, TimeSpan ttl)
    {
        var hex = Convert.ToHexStringLower(sha256);
        var expires = (time.GetUtcNow() + ttl).ToUnixTimeSeconds();
        return $"{RoutePrefix}/{jobId}/{index}?sha256={hex}&size={sizeBytes}&expires={expires}&signature={Sign(jobId, index, hex, sizeBytes, expires)}";
    }

    /// <summary>What a PUT's URL grants, or why it grants nothing.</summary>
    public readonly record struct Grant(string Sha256, long SizeBytes, string? Refusal);

    /// <summary>Checks the URL's query for the image: signed with this key for exactly these fields, and not expired.</summary>
    public Grant Check(string jobId, uint index, string? sha256, string? size, string? expires, string? signature)
    {
        if (sha256 is not { Length: SHA256.HashSizeInBytes * 2 } || !long.TryParse(size, NumberStyles.None, CultureInfo.InvariantCulture, out var bytes)
            || !long.TryParse(expires, NumberStyles.None, CultureInfo.InvariantCulture, out var until) || signature is null)
            return new Grant("", 0, "not an upload URL (sha256, size, expires and signature are required)");
        var expected = Encoding.ASCII.GetBytes(Sign(jobId, index, sha256, bytes, until));
        if (!CryptographicOperations.FixedTimeEquals(expected, Encoding.ASCII.GetBytes(signature)))
            return new Grant("", 0, "the signature does not match (another coordinator's key, or a changed URL)");
        if (time.GetUtcNow().ToUnixTimeSeconds() > until) return new Grant("", 0, "the upload URL has expired");
        return new Grant(sha256, bytes, null);
    }

    private string Sign(string jobId, uint index, string sha256Hex, long sizeBytes, long expires) =>
        Convert.ToHexStringLower(HMACSHA256.HashData(key, Encoding.UTF8.GetBytes($"PUT\n{jobId}\n{index}\n{sha256Hex}\n{sizeBytes}\n{expires}")));
}
