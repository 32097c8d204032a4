using Microsoft.Extensions.Logging;

namespace RenderFarm.Coordinator.Storage;

/// <summary>Picks the result store from <c>Farm:Storage</c>: an <c>s3://bucket/prefix</c> URL or a directory.</summary>
public static class ResultStores
{
    public static IResultStore Create(CoordinatorOptions options, ILoggerFactory loggers)
    {
        var logger = loggers.CreateLogger(typeof(ResultStores).FullName!);
        if (!S3Location.IsS3Url(options.Storage))
        {
            var store = new FileSystemResultStore(options.Storage);
            logger.LogInformation("Results are stored in directory {Root}", store.Root);
            if (options.S3.DirectUploads)
                logger.LogWarning("Farm:S3:DirectUploads is set, but results are stored in a directory: workers send them through the coordinator");
            return store;
        }
        var s3 = new S3ResultStore(S3Location.Parse(options.Storage), options.S3);
        // S3StorageOptions.ToString leaves the secret out; the store's description has endpoint and bucket only.
        logger.LogInformation("Results are stored in {Location} at {Endpoint} ({Settings})", s3.Location, s3.Endpoint, options.S3);
        return s3;
    }
}
