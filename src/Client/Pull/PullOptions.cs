namespace RenderFarm.Client.Pull;

/// <summary>How <c>farm pull</c> downloads (the flags beyond the folder).</summary>
/// <param name="Parallel">Result streams read at once (each every Nth image) and images in flight: writers, or concurrent GETs of presigned URLs.</param>
/// <param name="PresignedUrls">Ask for presigned URLs (used where the store can hand them out: S3).</param>
/// <param name="Plain">Plain lines even on a terminal.</param>
public sealed record PullOptions(int Parallel = PullOptions.DefaultParallel, bool PresignedUrls = true, bool Plain = false)
{
    public const int DefaultParallel = 8;
    public const int MaxParallel = 64;
}
