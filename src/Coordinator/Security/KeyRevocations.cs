using System.Collections.Concurrent;
using RenderFarm.FarmState;
using StackExchange.Redis;

namespace RenderFarm.Coordinator.Security;

/// <summary>
/// Ends the long-lived calls (worker streams, watches, downloads, submissions) of a key once it is revoked, within
/// <see cref="CheckInterval"/>: every revocation is published on <see cref="FarmKeys.ApiKeyRevokedChannel"/> and acted on
/// at once, and since pub/sub loses messages while a connection is down, the keys with open calls are also checked
/// every interval. A call is bound to its key by <see cref="ApiKeyInterceptor"/>.
/// </summary>
public sealed class KeyRevocations(IConnectionMultiplexer redis, ApiKeyStore keys, ILogger<KeyRevocations> logger) : BackgroundService
{
    public static readonly TimeSpan CheckInterval = TimeSpan.FromSeconds(2);

    private readonly ConcurrentDictionary<string, ConcurrentDictionary<CancellationTokenSource, byte>> _open = new(StringComparer.Ordinal);

    /// <summary>A token cancelled when <paramref name="keyId"/> is revoked; dispose the result when the call ends.</summary>
    public Binding Bind(string keyId)
    {
        var source = new CancellationTokenSource();
        _open.GetOrAdd(keyId, _ => new()).TryAdd(source, 0);
        return new Binding(this, keyId, source);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Fire and forget, as WorkerConnections: registered now, subscribed once Redis answers; awaiting it would stop
        // the host (this service's failure) when the coordinator starts during a Redis outage.
        var subscription = await redis.GetSubscriber().SubscribeAsync(RedisChannel.Literal(FarmKeys.ApiKeyRevokedChannel), CommandFlags.FireAndForget);
        subscription.OnMessage(m => Revoke((string)m.Message!));
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                await Task.Delay(CheckInterval, stoppingToken);
                var ids = _open.Where(e => !e.Value.IsEmpty).Select(e => e.Key).ToList();
                try
                {
                    foreach (var id in await keys.RevokedAmongAsync(ids)) Revoke(id);
                }
                catch (Exception e) when (e is RedisException or TimeoutException)
                {
                    logger.LogDebug("Revocation check skipped: {Message}", e.Message);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested) { }
        finally
        {
            await subscription.UnsubscribeAsync();
        }
    }

    private void Revoke(string keyId)
    {
        if (!_open.TryGetValue(keyId, out var calls) || calls.IsEmpty) return;
        logger.LogWarning("API key {KeyId} was revoked: ending its {Calls} open call(s)", keyId, calls.Count);
        foreach (var source in calls.Keys)
        {
            try { source.Cancel(); } catch (ObjectDisposedException) { }
        }
    }

    /// <summary>One call's tie to its key.</summary>
    public sealed class Binding(KeyRevocations owner, string keyId, CancellationTokenSource source) : IDisposable
    {
        public CancellationToken Revoked => source.Token;
        public bool IsRevoked => source.IsCancellationRequested;

        public void Dispose()
        {
            if (owner._open.TryGetValue(keyId, out var calls)) calls.TryRemove(source, out _);
            source.Dispose();
        }
    }
}
