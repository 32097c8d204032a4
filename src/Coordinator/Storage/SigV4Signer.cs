using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace RenderFarm.Coordinator.Storage;

/// <summary>
/// AWS Signature Version 4 for S3, as a pure function of the request: the Authorization header for a request and the
/// query string of a presigned URL. Checked against the worked examples of the S3 API reference
/// ("Signature Calculations for the Authorization Header" and "Query Parameters").
/// </summary>
public sealed class SigV4Signer(string accessKey, string secretKey, string region)
{
    public const string Algorithm = "AWS4-HMAC-SHA256";
    public const string UnsignedPayload = "UNSIGNED-PAYLOAD";
    public const string EmptyPayloadSha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// <summary>Longest validity S3 accepts for a presigned URL.</summary>
    public static readonly TimeSpan MaxPresignTtl = TimeSpan.FromDays(7);

    public string Region { get; } = region;

    /// <summary>
    /// The Authorization header value for a request. <paramref name="headers"/> are the headers to sign (host,
    /// x-amz-date and x-amz-content-sha256 among them), by lower-case name.
    /// </summary>
    public string Authorization(string method, string canonicalPath, string canonicalQuery,
        IReadOnlyDictionary<string, string> headers, string payloadSha256, DateTimeOffset time)
    {
        var (signedHeaders, signature) = Sign(method, canonicalPath, canonicalQuery, headers, payloadSha256, time);
        return $"{Algorithm} Credential={accessKey}/{Scope(time)},SignedHeaders={signedHeaders},Signature={signature}";
    }

    /// <summary>The full query string (no leading '?') of a presigned request signing only the host header.</summary>
    public string PresignQuery(string method, string canonicalPath, string host, TimeSpan ttl, DateTimeOffset time)
    {
        if (ttl <= TimeSpan.Zero || ttl > MaxPresignTtl)
            throw new ArgumentOutOfRangeException(nameof(ttl), ttl, "a presigned URL lives between 1 second and 7 days");
        var query = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["X-Amz-Algorithm"] = Algorithm,
            ["X-Amz-Credential"] = $"{accessKey}/{Scope(time)}",
            ["X-Amz-Date"] = AmzDate(time),
            ["X-Amz-Expires"] = ((long)Math.Ceiling(ttl.TotalSeconds)).ToString(CultureInfo.InvariantCulture),
            ["X-Amz-SignedHeaders"] = "host",
        };
        var canonicalQuery = CanonicalQuery(query);
        var (_, signature) = Sign(method, canonicalPath, canonicalQuery,
            new Dictionary<string, string> { ["host"] = host }, UnsignedPayload, time);
        return $"{canonicalQuery}&X-Amz-Signature={signature}";
    }

    public static string AmzDate(DateTimeOffset time) => time.UtcDateTime.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture);

    /// <summary>Canonical query string: keys sorted, keys and values URI-encoded.</summary>
    public static string CanonicalQuery(IEnumerable<KeyValuePair<string, string>> parameters) =>
        string.Join('&', parameters
            .Select(p => (Key: UriEncode(p.Key), Value: UriEncode(p.Value)))
            .OrderBy(p => p.Key, StringComparer.Ordinal).ThenBy(p => p.Value, StringComparer.Ordinal)
            .Select(p => $"{p.Key}={p.Value}"));

    /// <summary>Encodes each segment of an object path ("/bucket/a b/c.png" → "/bucket/a%20b/c.png"); '/' stays.</summary>
    public static string EncodePath(string path) => string.Join('/', path.Split('/').Select(UriEncode));

    /// <summary>RFC 3986 encoding as SigV4 wants it: unreserved characters stay, everything else is %XX (upper case) of its UTF-8.</summary>
    public static string UriEncode(string value)
    {
        var builder = new StringBuilder(value.Length);
        foreach (var b in Encoding.UTF8.GetBytes(value))
        {
            var c = (char)b;
            if (c is >= 'A' and <= 'Z' or >= 'a' and <= 'z' or >= '0' and <= '9' or '-' or '_' or '.' or '~') builder.Append(c);
            else builder.Append('%').Append(b.ToString("X2", CultureInfo.InvariantCulture));
        }
        return builder.ToString();
    }

    private string Scope(DateTimeOffset time) =>
        $"{time.UtcDateTime.ToString("yyyyMMdd", CultureInfo.InvariantCulture)}/{Region}/s3/aws4_request";

    private (string SignedHeaders, string Signature) Sign(string method, string canonicalPath, string canonicalQuery,
        IReadOnlyDictionary<string, string> headers, string payloadSha256, DateTimeOffset time)
    {
        var sorted = headers
            .Select(h => (Name: h.Key.ToLowerInvariant(), Value: CollapseSpaces(h.Value.Trim())))
            .OrderBy(h => h.Name, StringComparer.Ordinal)
            .ToList();
        var signedHeaders = string.Join(';', sorted.Select(h => h.Name));
        var canonicalRequest = string.Join('\n',
            method, canonicalPath, canonicalQuery,
            string.Concat(sorted.Select(h => $"{h.Name}:{h.Value}\n")),
            signedHeaders, payloadSha256);
        var stringToSign = string.Join('\n',
            Algorithm, AmzDate(time), Scope(time),
            Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(canonicalRequest))));

        var key = HMACSHA256.HashData(Encoding.UTF8.GetBytes("AWS4" + secretKey),
            Encoding.UTF8.GetBytes(time.UtcDateTime.ToString("yyyyMMdd", CultureInfo.InvariantCulture)));
        key = HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(Region));
        key = HMACSHA256.HashData(key, "s3"u8);
        key = HMACSHA256.HashData(key, "aws4_request"u8);
        var signature = Convert.ToHexStringLower(HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(stringToSign)));
        return (signedHeaders, signature);
    }

    private static string CollapseSpaces(string value)
    {
        if (!value.Contains("  ", StringComparison.Ordinal)) return value;
        var builder = new StringBuilder(value.Length);
        foreach (var c in value)
            if (c != ' ' || builder.Length == 0 || builder[^1] != ' ') builder.Append(c);
        return builder.ToString();
    }

    /// <summary>Never prints the secret.</summary>
    public override string ToString() => $"SigV4({accessKey}, {Region})";
}
