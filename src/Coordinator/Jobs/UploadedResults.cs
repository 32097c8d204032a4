using Google.Protobuf;
using RenderFarm.Coordinator.Workers;
using RenderFarm.Protocol;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// Joins a results message to the upload it names (<see cref="ShardResults.Upload"/>): each image's PNG is the next
/// <see cref="ShardImage.UploadedBytes"/> of the upload's body, in the message's order, read in place, not copied.
/// </summary>
public static class UploadedResults
{
    /// <summary>Why the message and the upload do not fit together (nothing is attached then); null once every image has its PNG.</summary>
    public static string? Attach(ShardResults results, StagedUpload? upload)
    {
        if (upload is null) return $"names upload '{BatchValidator.Truncate(results.Upload)}', which its stream did not make or named already";
        long total = 0;
        foreach (var image in results.Images)
        {
            if (image.Png.Length > 0 || image.Latents.Length > 0) return "carries PNGs or latents as well as naming an upload";
            total += image.UploadedBytes;
        }
        if (total != upload.Length) return $"gives its images {total} bytes of an upload of {upload.Length}";
        var offset = 0;
        foreach (var image in results.Images)
        {
            image.Png = UnsafeByteOperations.UnsafeWrap(upload.Memory.Slice(offset, (int)image.UploadedBytes));
            offset += (int)image.UploadedBytes;
        }
        return null;
    }
}
