namespace RenderFarm.Coordinator.Storage;

/// <summary>Settings of the directory result store (section <c>Farm:FileSystem</c>), used when <c>Farm:Storage</c> is a directory.</summary>
public sealed class FileSystemStorageOptions
{
    /// <summary>
    /// The coordinator's web endpoint (<c>Kestrel:Endpoints:Web</c>) as workers reach it, e.g. <c>http://coordinator:8081</c>.
    /// When set, workers PUT each PNG there over HTTP/1.1 (<c>/uploads/JOB/INDEX</c>, a URL the coordinator signs for the
    /// image's sha256 and size) and the coordinator streams it to the file while hashing it, instead of receiving it in
    /// the gRPC stream: about half the coordinator's CPU per 512² result (bench/farm-overhead.md). Unset: results come
    /// on the stream.
    /// </summary>
    public string? UploadUrl { get; set; }

    /// <summary>
    /// The key upload URLs are signed with (HMAC-SHA256). Unset: a random key made when the coordinator starts, so a
    /// restart voids the URLs it handed out (their workers send those results on the stream instead). Replicas behind
    /// one <see cref="UploadUrl"/> must share a key: a URL signed by one is then taken by any.
    /// </summary>
    public string? UploadKey { get; set; }

    /// <summary>What may be logged: whether uploads are on, never the key.</summary>
    public override string ToString() =>
        UploadUrl is null ? "uploads off" : $"uploads at {UploadUrl}, key {(UploadKey is null ? "made at start" : "configured")}";
}
