using System.Net;
using System.Net.Sockets;

namespace RenderFarm.Worker.Tests.Support;

/// <summary>
/// A TCP relay on loopback to a port of this machine whose open connections can go dark: they stay open and what either
/// side sends is dropped, as when the machine at the other end loses power or the network between partitions (no FIN,
/// no RST, and this side's sends still succeed). Connections made afterwards are relayed as before: the coordinator's
/// address now leads to a live replica.
/// </summary>
public sealed class TcpBlackhole : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Relay> _relays = [];
    private readonly Task _accepting;

    public TcpBlackhole(int targetPort)
    {
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _accepting = AcceptAsync(targetPort);
    }

    public int Port { get; }

    public string Url => $"http://127.0.0.1:{Port}";

    /// <summary>Every connection open now goes dark.</summary>
    public void DarkenOpenConnections()
    {
        lock (_relays)
            foreach (var relay in _relays) relay.Dark = true;
    }

    private async Task AcceptAsync(int targetPort)
    {
        while (true)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }
            var target = new TcpClient();
            await target.ConnectAsync(IPAddress.Loopback, targetPort, _stop.Token);
            var relay = new Relay(client, target);
            lock (_relays) _relays.Add(relay);
            _ = relay.PumpAsync(client.GetStream(), target.GetStream(), _stop.Token);
            _ = relay.PumpAsync(target.GetStream(), client.GetStream(), _stop.Token);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _accepting;
        lock (_relays)
            foreach (var relay in _relays) relay.Dispose();
        _stop.Dispose();
    }

    private sealed class Relay(TcpClient a, TcpClient b) : IDisposable
    {
        public volatile bool Dark;

        public async Task PumpAsync(Stream from, Stream to, CancellationToken ct)
        {
            var buffer = new byte[16 * 1024];
            try
            {
                int read;
                while ((read = await from.ReadAsync(buffer, ct)) > 0)
                    if (!Dark) await to.WriteAsync(buffer.AsMemory(0, read), ct);
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException)
            {
                // A side closed, or the relay stopped.
            }
            if (!Dark) Dispose(); // a side closed: so does the other (a dark connection says nothing)
        }

        public void Dispose()
        {
            a.Dispose();
            b.Dispose();
        }
    }
}
