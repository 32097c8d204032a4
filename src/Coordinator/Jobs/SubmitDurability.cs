using Grpc.Core;
using Microsoft.Extensions.Options;
using StackExchange.Redis;
using RenderFarm.FarmState;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// Confirms that an accepted job is on Redis's disk before the coordinator acknowledges it, so a Redis crash (host or
/// power loss included) loses no acknowledged job while the hot path keeps <c>appendfsync everysec</c>. On Redis ≥ 7.2
/// that is WAITAOF, on a connection of its own: it blocks its connection until the AOF is fsynced (up to a second)
/// and must not stall the shared one. Older Redis has no way to confirm: there only <c>appendfsync always</c> makes an
/// acknowledged job crash-safe, and the coordinator says once in its log when the server runs otherwise.
/// </summary>
public sealed class SubmitDurability(IOptions<CoordinatorOptions> options, ILogger<SubmitDurability> logger) : IAsyncDisposable
{
    private static readonly TimeSpan ConfirmTimeout = TimeSpan.FromSeconds(5);
    private static readonly Version WaitAofSince = new(7, 2);
    private readonly SemaphoreSlim _connecting = new(1, 1);
    private ConnectionMultiplexer? _connection;
    private volatile bool _waitAof = true; // until the server shows it cannot

    public async Task ConfirmAsync(string jobId)
    {
        if (!_waitAof) return;
        var connection = await ConnectAsync();
        RedisKey marker = FarmKeys.JobAcknowledged(jobId);
        var server = connection.GetServer(marker);
        if (!server.IsConnected) throw NotConfirmed(jobId, "Redis is unreachable");
        if (server.Version < WaitAofSince)
        {
            _waitAof = false;
            await WarnUnlessFsyncAlwaysAsync(server);
            return;
        }
        // WAITAOF waits for this connection's own writes: one on the job's node after the commit covers the commit.
        var db = connection.GetDatabase();
        await db.StringSetAsync(marker, 1, TimeSpan.FromMinutes(1));
        RedisResult result;
        try
        {
            result = await server.ExecuteAsync("WAITAOF", 1, 0, (long)ConfirmTimeout.TotalMilliseconds);
        }
        catch (RedisServerException e) when (e.Message.Contains("appendonly is disabled", StringComparison.OrdinalIgnoreCase))
        {
            _waitAof = false;
            logger.LogWarning("Redis runs without AOF: accepted jobs are lost if Redis restarts (deployments run appendonly yes)");
            return;
        }
        if ((long)result[0] < 1)
            throw NotConfirmed(jobId, $"Redis did not confirm it on disk within {ConfirmTimeout.TotalSeconds:0} s");
    }

    /// <summary>The job stands (it was committed), but it was not acknowledged: the caller must not simply resubmit.</summary>
    private static RpcException NotConfirmed(string jobId, string why) => new(new Status(StatusCode.Unavailable,
        $"job {jobId} was queued but not confirmed durable ({why}); check `farm status {jobId}` before submitting again"));

    private async Task WarnUnlessFsyncAlwaysAsync(IServer server)
    {
        try
        {
            var config = (await server.ConfigGetAsync("append*")).ToDictionary(p => p.Key, p => p.Value);
            if (config.GetValueOrDefault("appendonly") == "yes" && config.GetValueOrDefault("appendfsync") == "always") return;
            logger.LogWarning("Redis {Version} has no WAITAOF and runs appendonly {AppendOnly}, appendfsync {Fsync}: a job acknowledged " +
                              "shortly before a Redis host crash can be lost. Run appendfsync always on Redis < 7.2, or Redis 7.2 or newer",
                server.Version, config.GetValueOrDefault("appendonly", "?"), config.GetValueOrDefault("appendfsync", "?"));
        }
        catch (RedisException e)
        {
            logger.LogWarning("Redis {Version} has no WAITAOF and its persistence settings cannot be read ({Error}): accepted jobs " +
                              "are crash-safe only if it runs appendonly yes with appendfsync always", server.Version, e.Message);
        }
    }

    private async Task<ConnectionMultiplexer> ConnectAsync()
    {
        if (_connection is { } connected) return connected;
        await _connecting.WaitAsync();
        try
        {
            if (_connection is null)
            {
                var config = ConfigurationOptions.Parse(options.Value.Redis);
                config.AbortOnConnectFail = false;
                config.AllowAdmin = true; // CONFIG GET, to tell whether an old server fsyncs every write
                config.ClientName = "renderfarm-coordinator-durability";
                _connection = await ConnectionMultiplexer.ConnectAsync(config);
            }
            return _connection;
        }
        finally
        {
            _connecting.Release();
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_connection is not null) await _connection.DisposeAsync();
    }
}
