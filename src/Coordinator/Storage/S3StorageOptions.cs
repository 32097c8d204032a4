using System.ComponentModel.DataAnnotations;

namespace RenderFarm.Coordinator.Storage;

/// <summary>
/// Settings of the S3-compatible result store (section <c>Farm:S3</c>), used when <c>Farm:Storage</c> is an
/// <c>s3://bucket/prefix</c> URL; the store speaks to it through AWSSDK.S3. Credentials fall back to
/// <c>AWS_ACCESS_KEY_ID</c> / <c>AWS_SECRET_ACCESS_KEY</c> (with <c>AWS_SESSION_TOKEN</c> when set) and the region to
/// <c>AWS_REGION</c>; nothing else of the SDK's credential chain is consulted (no profiles, no instance metadata).
/// The secret key is never logged (<see cref="ToString"/> leaves it out).
/// </summary>
public sealed class S3StorageOptions
{
    /// <summary>Service URL, e.g. <c>http://minio:9000</c>; empty = AWS (<c>https://s3.REGION.amazonaws.com</c>).</summary>
    public string? Endpoint { get; set; }

    /// <summary>Signing region; most S3-compatible servers accept <c>us-east-1</c>.</summary>
    public string? Region { get; set; }

    public string? AccessKey { get; set; }
    public string? SecretKey { get; set; }

    /// <summary><c>ENDPOINT/BUCKET/KEY</c> instead of <c>BUCKET.ENDPOINT/KEY</c>: what MinIO and most self-hosted servers want.</summary>
    public bool UsePathStyle { get; set; }

    /// <summary>
    /// First-result-wins with a conditional put (<c>If-None-Match: *</c>), atomic on the server. AWS S3, MinIO and R2
    /// support it; set false for a server that ignores the header (it would silently overwrite): the store then does
    /// HEAD-then-PUT, which has a small race window (see <see cref="S3ResultStore"/>). <see cref="DirectUploads"/> needs
    /// it: the coordinator refuses to start with direct uploads and this false.
    /// </summary>
    public bool ConditionalWrites { get; set; } = true;

    /// <summary>Lifetime of presigned download URLs handed out by DownloadResults.</summary>
    [Range(1, 604_800)] public int PresignTtlSeconds { get; set; } = 3600;

    /// <summary>
    /// Workers PUT their PNGs straight into the bucket through presigned URLs the coordinator signs for each image's
    /// sha256 and size, instead of streaming them through the coordinator: its CPU per image no longer grows with the
    /// image (bench/farm-overhead.md). Workers must reach <see cref="Endpoint"/> at the same address. The coordinator then
    /// checks results by sample (it fetches the ones <c>Farm:ResultDecodeFirst</c> / <c>Farm:ResultDecodeOneIn</c> pick and
    /// decodes them), not every one; S3 itself refuses bytes other than those signed for.
    /// <para>
    /// Needs <see cref="ConditionalWrites"/> (a server that honours <c>If-None-Match: *</c>): the coordinator refuses to
    /// start with this true and that false. An upload URL stays valid for minutes after it is signed, and a worker whose
    /// delivery was lost meanwhile (stalled, cut off) can still use it; only the server's refusal of a second write keeps
    /// its PUT from replacing the result another delivery stored and the job recorded, whose sha256 users' downloads are
    /// checked against. For a server that ignores the header, leave this false: results go through the coordinator, which
    /// checks before it writes.
    /// </para>
    /// </summary>
    public bool DirectUploads { get; set; }

    /// <summary>Per-request timeout against the S3 service.</summary>
    [Range(1, 3600)] public int RequestTimeoutSeconds { get; set; } = 60;

    public override string ToString() =>
        $"endpoint {Endpoint ?? "(aws)"}, region {Region ?? "(default)"}, access key {AccessKey ?? "(none)"}, " +
        $"path-style {UsePathStyle}, conditional writes {ConditionalWrites}, direct uploads {DirectUploads}";
}
