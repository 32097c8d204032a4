namespace RenderFarm.Shared;

/// <summary>gRPC metadata names the coordinator, workers and the client agree on.</summary>
public static class FarmHeaders
{
    /// <summary>A client's or worker's credential on every call.</summary>
    public const string ApiKey = "x-api-key";

    /// <summary>Response header of a DownloadResults call that honoured partition_count/partition.</summary>
    public const string Partitioned = "farm-partitioned";
}
