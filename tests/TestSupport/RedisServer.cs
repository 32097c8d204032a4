using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using StackExchange.Redis;

namespace RenderFarm.TestSupport;

/// <summary>
/// A real redis-server on a free loopback port, in its own temporary directory. It can be killed (-9) and started
/// again on the same port and directory; with append-only persistence on, that is a Redis crash and recovery.
/// </summary>
public sealed class RedisServer : IAsyncDisposable
{
    private readonly string _directory;
    private readonly bool _appendOnly;
    private readonly string _appendFsync;
    private readonly IReadOnlyList<string> _arguments;
    private Process? _process;

    private RedisServer(string directory, int port, bool appendOnly, string appendFsync, IReadOnlyList<string> arguments)
    {
        _directory = directory;
        Port = port;
        _appendOnly = appendOnly;
        _appendFsync = appendFsync;
        _arguments = arguments;
    }

    public int Port { get; }
    public string ConnectionString => $"127.0.0.1:{Port}";

    /// <summary>The installed redis-server's version (<c>redis-server --version</c>: "Redis server v=7.0.15 ...").</summary>
    public static Version InstalledVersion => Installed.Value;

    private static readonly Lazy<Version> Installed = new(() =>
    {
        using var process = Process.Start(new ProcessStartInfo("redis-server", "--version") { RedirectStandardOutput = true })!;
        var text = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        var match = System.Text.RegularExpressions.Regex.Match(text, @"v=(\d+\.\d+\.\d+)");
        return match.Success ? Version.Parse(match.Groups[1].Value) : throw new InvalidOperationException($"unrecognised redis-server --version: {text}");
    });

    /// <param name="appendOnly">AOF on, as deployments run it.</param>
    /// <param name="appendFsync">The AOF's fsync policy (<c>always</c>, <c>everysec</c>, <c>no</c>).</param>
    /// <param name="arguments">Further redis-server options (a cluster node's, <see cref="RedisCluster"/>).</param>
    public static async Task<RedisServer> StartAsync(bool appendOnly = false, string appendFsync = "always", IReadOnlyList<string>? arguments = null)
    {
        var server = new RedisServer(Directory.CreateTempSubdirectory("farm-redis-").FullName, FreePort(), appendOnly, appendFsync, arguments ?? []);
        await server.StartProcessAsync();
        return server;
    }

    public async Task KillAsync()
    {
        if (_process is { HasExited: false })
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        _process?.Dispose();
        _process = null;
    }

    public async Task RestartAsync()
    {
        await KillAsync();
        await StartProcessAsync();
    }

    private async Task StartProcessAsync()
    {
        var info = new ProcessStartInfo("redis-server")
        {
            ArgumentList =
            {
                "--port", Port.ToString(), "--bind", "127.0.0.1", "--dir", _directory, "--save", "",
                "--appendonly", _appendOnly ? "yes" : "no", "--appendfsync", _appendFsync,
            },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var argument in _arguments) info.ArgumentList.Add(argument);
        try
        {
            _process = Process.Start(info)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException("redis-server is not installed (apt-get install redis-server)", e);
        }
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();

        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (true)
        {
            try
            {
                await using var probe = await ConnectionMultiplexer.ConnectAsync($"{ConnectionString},connectTimeout=500");
                await probe.GetDatabase().PingAsync();
                return;
            }
            // Not listening yet, or listening but still replaying its AOF after a restart ("LOADING").
            catch (Exception e) when ((e is RedisConnectionException || e is RedisServerException { Message: var m } && m.StartsWith("LOADING"))
                                      && DateTime.UtcNow < deadline && !_process.HasExited)
            {
                await Task.Delay(100);
            }
        }
    }

    /// <summary>
    /// A TCP port nothing is bound to, below the kernel's ephemeral range and never handed out before in this process.
    /// A port from binding port 0 is an ephemeral one, which any outgoing connection made before the server binds it
    /// may take (a Redis client's, say): the server then fails with "address already in use".
    /// </summary>
    public static int FreePort()
    {
        int top = EphemeralLow > 11000 ? EphemeralLow - 1 : 65535;
        while (true)
        {
            int port = Random.Shared.Next(10000, top + 1);
            lock (HandedOut)
            {
                if (!HandedOut.Add(port)) continue;
            }
            try
            {
                using var listener = new TcpListener(IPAddress.Any, port);
                listener.Start();
                return port;
            }
            catch (SocketException)
            {
                // Bound already: try another.
            }
        }
    }

    private static readonly HashSet<int> HandedOut = [];

    private static readonly int EphemeralLow = ReadEphemeralLow();

    private static int ReadEphemeralLow()
    {
        try
        {
            return int.Parse(File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range").Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[0]);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return 32768;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        try { Directory.Delete(_directory, recursive: true); } catch (IOException) { }
    }
}
