using Grpc.Core;
using Grpc.Net.Client;
using RenderFarm.Client.Cli;
using RenderFarm.Protocol;
using RenderFarm.Shared;

namespace RenderFarm.Client.Connection;

/// <summary>
/// The coordinator one command talks to: its address, the JobService client, and the per-call options (the
/// <c>x-api-key</c> header on every call when a key is set). Plain <c>http://</c> addresses use HTTP/2 without TLS.
/// </summary>
public sealed class CoordinatorConnection : IDisposable
{
    public const string DefaultAddress = "http://127.0.0.1:5000";
    public const string ApiKeyHeader = FarmHeaders.ApiKey;

    private readonly GrpcChannel? _channel;
    private readonly Metadata? _headers;

    private CoordinatorConnection(Uri address, string? apiKey, JobService.JobServiceClient client, GrpcChannel? channel)
    {
        Address = address;
        Client = client;
        _channel = channel;
        if (!string.IsNullOrEmpty(apiKey))
        {
            _headers = new Metadata { { ApiKeyHeader, apiKey } };
        }
    }

    public Uri Address { get; }
    public JobService.JobServiceClient Client { get; }

    /// <summary>The address as the user should see it in messages (no trailing slash).</summary>
    public string DisplayAddress => Address.GetLeftPart(UriPartial.Authority) + Address.AbsolutePath.TrimEnd('/');

    public static CoordinatorConnection Connect(string address, string? apiKey, Func<Uri, JobService.JobServiceClient>? factory)
    {
        var uri = ParseAddress(address);
        if (apiKey is not null && !IsValidApiKey(apiKey))
        {
            throw new CliUsageException("error: --api-key may only hold printable ASCII characters");
        }

        if (factory is not null)
        {
            return new CoordinatorConnection(uri, apiKey, factory(uri), channel: null);
        }

        var channel = GrpcChannel.ForAddress(uri, new GrpcChannelOptions
        {
            // FARM_CA_FILE: PEM CA certificates to trust for an https:// coordinator (besides the system's).
            HttpHandler = RenderFarm.Shared.CoordinatorTrust.Apply(new SocketsHttpHandler
            {
                ConnectTimeout = TimeSpan.FromSeconds(5),
                // Long watch/download streams: notice a vanished coordinator instead of hanging on a dead socket.
                KeepAlivePingDelay = TimeSpan.FromSeconds(20),
                KeepAlivePingTimeout = TimeSpan.FromSeconds(10),
                PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
                EnableMultipleHttp2Connections = true,
            }, Environment.GetEnvironmentVariable("FARM_CA_FILE")),
            MaxReceiveMessageSize = 64 * 1024 * 1024,
        });
        return new CoordinatorConnection(uri, apiKey, new JobService.JobServiceClient(channel), channel);
    }

    /// <summary>An API key travels as a header value: printable ASCII only.</summary>
    public static bool IsValidApiKey(string apiKey) => apiKey.All(c => c is >= (char)0x20 and <= (char)0x7e);

    /// <summary>Accepts <c>http://host:port</c>, <c>https://…</c>, or a bare <c>host:port</c> (taken as http).</summary>
    public static Uri ParseAddress(string address)
    {
        var text = address.Trim();
        if (!text.Contains("://", StringComparison.Ordinal))
        {
            text = "http://" + text;
        }

        if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps) ||
            string.IsNullOrEmpty(uri.Host))
        {
            throw new CliUsageException(
                $"error: '{address}' is not a coordinator address (expected e.g. {DefaultAddress})");
        }

        return uri;
    }

    /// <summary>Options for one call: the API key header and the command's cancellation.</summary>
    public CallOptions CallOptions(CancellationToken cancellationToken) =>
        new(headers: _headers, cancellationToken: cancellationToken);

    public void Dispose() => _channel?.Dispose();
}
