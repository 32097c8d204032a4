using StackExchange.Redis;

namespace RenderFarm.FarmState;

/// <summary>
/// Finding keys by pattern (SCAN) on every primary the farm's Redis has: one on a single node, each shard's on Redis
/// Cluster. A SCAN sent without a key goes to whichever node the client picks, page by page (a cursor of one node
/// handed to another); here each primary is scanned to its end in turn. Replicas are skipped (they hold the same keys);
/// a primary that cannot be reached fails the scan rather than leaving its keys out unnoticed.
/// </summary>
public static class KeyScan
{
    /// <summary>
    /// The keys matching <paramref name="pattern"/> (and of <paramref name="type"/>, a Redis TYPE name, unless null),
    /// <paramref name="pageSize"/> examined per call. As with SCAN, a key may come twice; one created or deleted meanwhile
    /// may or may not come.
    /// </summary>
    public static async IAsyncEnumerable<string> EveryPrimaryAsync(IConnectionMultiplexer redis, string pattern, string? type = null, int pageSize = 1000)
    {
        foreach (var endpoint in redis.GetEndPoints())
        {
            var server = redis.GetServer(endpoint);
            if (server.IsReplica) continue;
            var cursor = "0";
            do
            {
                List<object> args = [cursor, "MATCH", pattern, "COUNT", pageSize];
                if (type is not null) args.AddRange(["TYPE", type]);
                var reply = (RedisResult[])(await server.ExecuteAsync("SCAN", args))!;
                cursor = (string)reply[0]!;
                foreach (var key in (RedisResult[])reply[1]!) yield return (string)key!;
            } while (cursor != "0");
        }
    }
}
