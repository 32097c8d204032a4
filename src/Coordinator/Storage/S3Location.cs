namespace RenderFarm.Coordinator.Storage;

/// <summary>Bucket and key prefix parsed from <c>s3://bucket/prefix</c>.</summary>
public sealed record S3Location(string Bucket, string Prefix)
{
    public static bool IsS3Url(string storage) => storage.StartsWith("s3://", StringComparison.OrdinalIgnoreCase);

    public static S3Location Parse(string url)
    {
        if (!IsS3Url(url)) throw new FormatException($"Farm:Storage '{url}' is not an s3://bucket/prefix URL");
        var rest = url["s3://".Length..];
        var slash = rest.IndexOf('/');
        var bucket = slash < 0 ? rest : rest[..slash];
        var prefix = slash < 0 ? "" : rest[(slash + 1)..].Trim('/');
        // Bucket naming rules (3-63 chars, lower-case letters, digits, dots, hyphens); also keeps it a valid host label.
        if (bucket.Length is < 3 or > 63 || !bucket.All(c => c is >= 'a' and <= 'z' or >= '0' and <= '9' or '.' or '-'))
            throw new FormatException($"Farm:Storage '{url}': '{bucket}' is not a valid bucket name (3-63 of a-z 0-9 . -)");
        if (prefix.Length > 0 && prefix.Split('/').Any(s => s is "" or "." or ".."))
            throw new FormatException($"Farm:Storage '{url}': the prefix has an empty, '.' or '..' segment");
        return new S3Location(bucket, prefix);
    }

    public override string ToString() => Prefix.Length == 0 ? $"s3://{Bucket}" : $"s3://{Bucket}/{Prefix}";
}
