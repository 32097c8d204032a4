using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace RenderFarm.Coordinator.Storage;

/// <summary>
/// Presigns S3 URLs (AWS Signature Version 4 in the query string, unsigned payload) for object URLs the SDK has
/// resolved: the SDK picks the host and path style, this only signs. AWSSDK.S3's GetPreSignedURL costs ~50 µs of CPU
/// a URL (it resolves the endpoint each time); a farm presigns one upload and one download per image, so the signing
/// is done here, with the signing key kept for the day. Tests hold it to AWS's published example and to the SDK's
/// own URLs.
/// </summary>
public sealed class S3UrlSigner(string accessKey, string secretKey, string? sessionToken, string region)
{
    private const string Algorithm = "AWS4-HMAC-SHA256";
    private volatile DayKey? _signingKey;

    private sealed record DayKey(string Day, byte[] Key);

    /// <summary>
    /// <paramref name="objectUrl"/> (scheme, host, encoded path; no query) signed for <paramref name="method"/> with
    /// <paramref name="headers"/> (the request must send exactly these, and the host) until <paramref name="expiresIn"/>
    /// has passed from <paramref name="now"/>.
    /// </summary>
    public string Presign(string method, string objectUrl, IEnumerable<(string Name, string Value)> headers, DateTimeOffset now, TimeSpan expiresIn)
    {
        var uri = new Uri(objectUrl);
        // The path as given (already escaped by EncodeKey), not as Uri re-renders it.
        var path = objectUrl[(objectUrl.IndexOf('/', objectUrl.IndexOf("://", StringComparison.Ordinal) + 3) is var at and >= 0 ? at : objectUrl.Length)..];
        if (path.Length == 0) path = "/";
        var time = now.UtcDateTime.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture);
        var day = time[..8];
        var scope = $"{day}/{region}/s3/aws4_request";
        var canonicalHeaders = headers
            .Select(h => (Name: h.Name.ToLowerInvariant(), Value: h.Value.Trim()))
            .Append((Name: "host", Value: uri.IsDefaultPort ? uri.Host : $"{uri.Host}:{uri.Port}"))
            .OrderBy(h => h.Name, StringComparer.Ordinal)
            .ToList();
        var signedHeaders = string.Join(';', canonicalHeaders.Select(h => h.Name));
        var query = new List<(string Name, string Value)>
        {
            ("X-Amz-Algorithm", Algorithm),
            ("X-Amz-Credential", $"{accessKey}/{scope}"),
            ("X-Amz-Date", time),
            ("X-Amz-Expires", ((long)Math.Ceiling(expiresIn.TotalSeconds)).ToString(CultureInfo.InvariantCulture)),
            ("X-Amz-SignedHeaders", signedHeaders),
        };
        if (!string.IsNullOrEmpty(sessionToken)) query.Add(("X-Amz-Security-Token", sessionToken));
        var canonicalQuery = string.Join('&', query.OrderBy(q => q.Name, StringComparer.Ordinal)
            .Select(q => $"{Uri.EscapeDataString(q.Name)}={Uri.EscapeDataString(q.Value)}"));

        var canonicalRequest = new StringBuilder()
            .Append(method).Append('\n')
            .Append(path).Append('\n')
            .Append(canonicalQuery).Append('\n');
        foreach (var (name, value) in canonicalHeaders) canonicalRequest.Append(name).Append(':').Append(value).Append('\n');
        canonicalRequest.Append('\n').Append(signedHeaders).Append('\n').Append("UNSIGNED-PAYLOAD");

        var stringToSign = $"{Algorithm}\n{time}\n{scope}\n{Hex(SHA256.HashData(Encoding.UTF8.GetBytes(canonicalRequest.ToString())))}";
        var signature = Hex(HMACSHA256.HashData(SigningKey(day), Encoding.UTF8.GetBytes(stringToSign)));
        return $"{objectUrl}?{canonicalQuery}&X-Amz-Signature={signature}";
    }

    /// <summary>The day's key: HMAC chain over date, region, service and "aws4_request".</summary>
    private byte[] SigningKey(string day)
    {
        if (_signingKey is { } cached && cached.Day == day) return cached.Key;
        var key = Encoding.UTF8.GetBytes("AWS4" + secretKey);
        foreach (var part in new[] { day, region, "s3", "aws4_request" }) key = HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(part));
        _signingKey = new DayKey(day, key);
        return key;
    }

    /// <summary>An object key as a URL path: each segment escaped as SigV4 wants it (RFC 3986 unreserved kept), slashes kept.</summary>
    public static string EncodeKey(string key) => string.Join('/', key.Split('/').Select(Uri.EscapeDataString));

    private static string Hex(byte[] bytes) => Convert.ToHexStringLower(bytes);
}
