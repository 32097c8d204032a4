using System.Diagnostics;
using System.Net.Sockets;
using RenderFarm.Coordinator.Storage;
using RenderFarm.Farm.Tests.Infrastructure;

namespace RenderFarm.Farm.Tests.Storage;

/// <summary>
/// A real S3-compatible server on a free loopback port, in its own temporary directory, for the S3 result store tests.
/// <list type="bullet">
/// <item><b>s3rver</b> (npm <c>s3rver</c> 3.7.1, pinned by <c>s3server/package-lock.json</c>): always used. It is the
/// S3-compatible server the project can install itself on any machine here (the npm registry is reachable; MinIO's
/// server binary is not downloadable, Debian ships no S3 server). It speaks the S3 REST API over HTTP with path-style
/// buckets, stores <c>x-amz-meta-*</c> metadata and serves SigV4 presigned GETs. Its gaps: it ignores
/// <c>If-None-Match</c> on PUT (so the store runs with <c>ConditionalWrites=false</c>, HEAD-then-PUT, against it) and
/// does not verify SigV4 signatures (signing is AWSSDK.S3's own, not code of ours).</item>
/// <item><b>moto</b> (<c>moto_server</c>, Python): used as well where it is installed (this machine image has moto
/// 5.2.1; PyPI is not reachable, so the project cannot install it itself). It implements conditional writes
/// (<c>If-None-Match: *</c> → 412), so the store's atomic first-result-wins path runs against a real server too.</item>
/// </list>
/// Neither checks an upload's body against its <c>x-amz-checksum-sha256</c> or <c>Content-MD5</c> (moto 5.2.1 took a PUT
/// with a wrong one of each, s3rver one with a wrong <c>Content-MD5</c>): tests of direct uploads cover what the
/// coordinator signs and checks, not S3's refusal of other bytes.
/// Neither makes concurrent PUTs of one key atomic as S3 does: eight concurrent <c>If-None-Match: *</c> PUTs to moto 5.2.1
/// all got 200 and left the first 64,969 bytes of one body followed by another's; s3rver once served one PUT's body
/// with another's checksum. The store keeps one process's deliveries of an image from racing (S3ResultStore).
/// </summary>
public sealed class S3TestServer : IAsyncDisposable
{
    public const string AccessKey = "S3RVER";   // s3rver's built-in key pair; moto accepts any
    public const string SecretKey = "S3RVER";

    private readonly Process _process;
    private readonly string _directory;

    private S3TestServer(string kind, Process process, string directory, int port)
    {
        Kind = kind;
        _process = process;
        _directory = directory;
        Endpoint = $"http://127.0.0.1:{port}";
    }

    public string Kind { get; }
    public string Endpoint { get; }

    /// <summary>Whether the store may use conditional puts against this server.</summary>
    public bool ConditionalWrites => Kind == "moto";

    /// <summary>The kinds that can run here: s3rver always (installed on demand), moto where it is installed.</summary>
    public static IEnumerable<string> AvailableKinds()
    {
        yield return "s3rver";
        if (MotoServerPath() is not null) yield return "moto";
    }

    public static async Task<S3TestServer> StartAsync(string kind)
    {
        if (kind == "s3rver" && S3rverInstall.WhyUnavailable is { } why)
            throw new InvalidOperationException($"s3rver is required by this run but cannot be installed: {why}");
        var directory = Directory.CreateTempSubdirectory($"farm-{kind}-").FullName;
        var port = RedisServer.FreePort();
        var info = kind switch
        {
            "s3rver" => new ProcessStartInfo("node")
            {
                ArgumentList = { S3rverInstall.ScriptPath(), "-d", directory, "-a", "127.0.0.1", "-p", port.ToString(), "--silent", "--no-vhost-buckets" },
            },
            "moto" => new ProcessStartInfo(MotoServerPath() ?? throw new InvalidOperationException("moto_server is not installed"))
            {
                ArgumentList = { "-H", "127.0.0.1", "-p", port.ToString() },
            },
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "s3rver or moto"),
        };
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        info.WorkingDirectory = directory;
        var process = Process.Start(info)!;
        var output = new System.Collections.Concurrent.ConcurrentQueue<string>();
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) output.Enqueue(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) output.Enqueue(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var server = new S3TestServer(kind, process, directory, port);

        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync("127.0.0.1", port);
                return server;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline && !process.HasExited)
            {
                await Task.Delay(100);
            }
            catch (SocketException)
            {
                await server.DisposeAsync();
                throw new InvalidOperationException($"{kind} did not start listening on {port}: {string.Join('\n', output.TakeLast(20))}");
            }
        }
    }

    public S3StorageOptions Options() => new()
    {
        Endpoint = Endpoint, Region = "us-east-1", AccessKey = AccessKey, SecretKey = SecretKey,
        UsePathStyle = true, ConditionalWrites = ConditionalWrites,
    };

    /// <summary>The coordinator settings that select this server: <c>Farm:Storage=s3://bucket/prefix</c> and <c>Farm:S3:*</c>.</summary>
    public void Configure(Dictionary<string, string?> settings, string bucket, string prefix)
    {
        settings["Farm:Storage"] = $"s3://{bucket}/{prefix}";
        settings["Farm:S3:Endpoint"] = Endpoint;
        settings["Farm:S3:Region"] = "us-east-1";
        settings["Farm:S3:AccessKey"] = AccessKey;
        settings["Farm:S3:SecretKey"] = SecretKey;
        settings["Farm:S3:UsePathStyle"] = "true";
        settings["Farm:S3:ConditionalWrites"] = ConditionalWrites ? "true" : "false";
    }

    /// <summary>A store on a new bucket of this server.</summary>
    public async Task<S3ResultStore> NewStoreAsync(string prefix = "renders")
    {
        var store = new S3ResultStore(new S3Location($"bucket-{Guid.NewGuid():N}"[..20], prefix), Options());
        await store.CreateBucketAsync(CancellationToken.None);
        return store;
    }

    private static string? MotoServerPath() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, "moto_server")).FirstOrDefault(File.Exists);

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
        try { Directory.Delete(_directory, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

/// <summary>
/// Installs s3rver once per machine with <c>npm ci</c> from the committed lock file into
/// <c>tests/Farm.Tests/Storage/s3server/node_modules</c> (git-ignored), bounded in time. If that cannot be done (no node,
/// npm registry unreachable) the S3 tests are skipped with the reason (<see cref="S3FactAttribute"/>), or fail with it
/// where the run requires them (<see cref="SkipReason"/>).
/// </summary>
public static class S3rverInstall
{
    private static readonly Lazy<string?> Failure = new(Install);

    public static string Directory
    {
        get
        {
            var root = new DirectoryInfo(AppContext.BaseDirectory);
            while (root is not null && !File.Exists(Path.Combine(root.FullName, "RenderFarm.sln"))) root = root.Parent;
            return Path.Combine(root?.FullName ?? throw new InvalidOperationException("repository root not found"),
                "tests", "Farm.Tests", "Storage", "s3server");
        }
    }

    public static string ScriptPath() => Path.Combine(Directory, "node_modules", "s3rver", "bin", "s3rver.js");

    /// <summary>Why s3rver cannot run here, or null when it is installed.</summary>
    public static string? WhyUnavailable => Failure.Value;

    /// <summary>
    /// Why the S3 tests are skipped, or null when they run. <c>scripts/test.sh</c> (and so CI) installs node and sets
    /// <c>RENDERFARM_REQUIRE_S3_TESTS=1</c>: there a missing s3rver fails each S3 test with the reason instead of
    /// skipping it, so a green run always means the S3 store was tested.
    /// </summary>
    public static string? SkipReason =>
        Environment.GetEnvironmentVariable("RENDERFARM_REQUIRE_S3_TESTS") == "1" ? null : WhyUnavailable;

    private static string? Install()
    {
        if (File.Exists(ScriptPath())) return null;
        try
        {
            // A lock file beside the folder keeps two test processes from installing at once.
            using var gate = AcquireLock(Path.Combine(Directory, ".install.lock"), TimeSpan.FromMinutes(4));
            if (File.Exists(ScriptPath())) return null;
            var info = new ProcessStartInfo("npm")
            {
                ArgumentList = { "ci", "--no-audit", "--no-fund", "--loglevel=error" },
                WorkingDirectory = Directory,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            using var npm = Process.Start(info)!;
            var stderr = npm.StandardError.ReadToEndAsync();
            var stdout = npm.StandardOutput.ReadToEndAsync();
            if (!npm.WaitForExit(TimeSpan.FromMinutes(3)))
            {
                npm.Kill(entireProcessTree: true);
                return "npm ci for s3rver took over 3 minutes (is the npm registry reachable?)";
            }
            if (npm.ExitCode != 0 || !File.Exists(ScriptPath()))
                return $"npm ci for s3rver failed (exit {npm.ExitCode}; is the npm registry reachable?): {Tail(stderr.Result + stdout.Result)}";
            return null;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return $"node/npm is not installed ({e.Message}): apt-get install nodejs npm";
        }
    }

    private static FileStream AcquireLock(string path, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            try { return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.DeleteOnClose); }
            catch (IOException) when (DateTime.UtcNow < deadline) { Thread.Sleep(500); }
        }
    }

    private static string Tail(string text) => text.Length <= 600 ? text.Trim() : text[^600..].Trim();
}

/// <summary>
/// A fact that needs s3rver: skipped, with the reason, only where it cannot be installed and the run does not require
/// it (<see cref="S3rverInstall.SkipReason"/>).
/// </summary>
public sealed class S3FactAttribute : FactAttribute
{
    public S3FactAttribute()
    {
        if (S3rverInstall.SkipReason is { } why) Skip = why;
    }
}

/// <summary>A theory over every S3 server kind that runs here (<see cref="S3TestServer.AvailableKinds"/>).</summary>
public sealed class S3TheoryAttribute : TheoryAttribute
{
    public S3TheoryAttribute()
    {
        if (S3rverInstall.SkipReason is { } why) Skip = why;
    }
}
