using System.Security.Cryptography;
using Grpc.Core;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests.Infrastructure;

public sealed record DownloadedImage(ImageInfo Info, byte[] Png)
{
    public string Sha256 => Convert.ToHexStringLower(SHA256.HashData(Png));
}

public static class Downloads
{
    /// <summary>Reassembles DownloadResults' chunks into whole images.</summary>
    public static async Task<List<DownloadedImage>> DownloadAllAsync(this JobService.JobServiceClient jobs, string jobId)
    {
        using var call = jobs.DownloadResults(new DownloadResultsRequest { JobId = jobId });
        var images = new List<DownloadedImage>();
        ImageInfo? current = null;
        var buffer = new MemoryStream();
        await foreach (var chunk in call.ResponseStream.ReadAllAsync())
        {
            if (chunk.Image is not null)
            {
                if (current is not null) images.Add(new DownloadedImage(current, buffer.ToArray()));
                current = chunk.Image;
                buffer = new MemoryStream();
            }
            chunk.Data.WriteTo(buffer);
        }
        if (current is not null) images.Add(new DownloadedImage(current, buffer.ToArray()));
        return images;
    }
}
