using System.Buffers;
using System.Globalization;
using System.Net;
using Polly;
using Polly.Retry;
using RenderFarm.Client.Cli;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Pull;

/// <summary>
/// Fetches images from the result store's presigned URLs (<see cref="ImageInfo.Url"/>) with plain GETs on one shared
/// <see cref="HttpClient"/> (no credentials: the URL is the permission), into a <see cref="ResultWriter"/>. A GET that
/// fails in a way a retry can fix — no connection, a reset, a body cut short, 5xx, 408, 429 — is retried by a Polly
/// retry with exponential backoff and jitter. An answer a retry cannot fix (403: the URL expired or its signature is
/// refused; any other 4xx), or retries used up, hands the image back so it comes through the coordinator's byte stream
/// instead.
/// </summary>
public sealed class PresignedFetcher
{
    public const int DefaultAttempts = 4;
    public static readonly TimeSpan FirstBackoff = TimeSpan.FromMilliseconds(250);

    private readonly HttpClient _http;
    private readonly ResultWriter _writer;
    private readonly ResiliencePipeline<Attempt> _retry;

    /// <param name="time">The clock the backoff waits on.</param>
    /// <param name="maxAttempts">GETs of one URL before the image is handed back (at least 2).</param>
    public PresignedFetcher(HttpClient http, ResultWriter writer, TimeProvider time, int maxAttempts = DefaultAttempts)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxAttempts, 2);
        _http = http;
        _writer = writer;
        _retry = new ResiliencePipelineBuilder<Attempt> { TimeProvider = time }
            .AddRetry(new RetryStrategyOptions<Attempt>
            {
                ShouldHandle = args => ValueTask.FromResult(args.Outcome.Result is { Retry: true }),
                MaxRetryAttempts = maxAttempts - 1,
                BackoffType = DelayBackoffType.Exponential,
                Delay = FirstBackoff,
                UseJitter = true,
            })
            .Build();
    }

    /// <summary>
    /// The client for <paramref name="parallel"/> concurrent GETs. <c>FARM_CA_FILE</c>, trusted for the coordinator,
    /// is trusted for the store too (a MinIO on the same private CA).
    /// </summary>
    public static HttpClient CreateClient(int parallel) =>
        new(RenderFarm.Shared.CoordinatorTrust.Apply(new SocketsHttpHandler
        {
            MaxConnectionsPerServer = parallel,
            ConnectTimeout = TimeSpan.FromSeconds(10),
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30),
            AutomaticDecompression = DecompressionMethods.None, // the sha256 is of the stored bytes
        }, Environment.GetEnvironmentVariable("FARM_CA_FILE")))
        {
            Timeout = TimeSpan.FromMinutes(2),
        };

    /// <summary>
    /// Downloads <paramref name="info"/>'s URL through the writer (verified and saved, or counted as failed).
    /// Returns null when the image is dealt with, or why it has to come through the coordinator.
    /// </summary>
    public async Task<string?> FetchAsync(ImageInfo info, CancellationToken cancellationToken)
    {
        var attempts = 0;
        var last = await _retry.ExecuteAsync(async token =>
        {
            attempts++;
            return await TryOnceAsync(info, token);
        }, cancellationToken);
        return last.Retry ? string.Create(CultureInfo.InvariantCulture, $"{last.Reason}, {attempts} attempts") : last.Reason;
    }

    /// <summary>One GET. Reason null: done. Otherwise whether a retry may help, and what went wrong.</summary>
    private async Task<Attempt> TryOnceAsync(ImageInfo info, CancellationToken cancellationToken)
    {
        HttpResponseMessage response;
        try
        {
            response = await _http.GetAsync(info.Url, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        }
        catch (Exception e) when (IsTransfer(e, cancellationToken))
        {
            return new Attempt(true, Describe(e));
        }

        using (response)
        {
            var code = (int)response.StatusCode;
            if (code is < 200 or >= 300)
            {
                var reason = string.Create(CultureInfo.InvariantCulture, $"HTTP {code} {response.ReasonPhrase}").TrimEnd();
                return new Attempt(code is 408 or 429 or >= 500, reason);
            }

            var part = _writer.Open(info);
            var buffer = ArrayPool<byte>.Shared.Rent(64 * 1024);
            try
            {
                Stream body;
                try
                {
                    body = await response.Content.ReadAsStreamAsync(cancellationToken);
                }
                catch (Exception e) when (IsTransfer(e, cancellationToken))
                {
                    part.Abandon();
                    return new Attempt(true, Describe(e));
                }

                await using (body)
                {
                    while (true)
                    {
                        int read;
                        try
                        {
                            read = await body.ReadAsync(buffer, cancellationToken);
                        }
                        catch (Exception e) when (IsTransfer(e, cancellationToken))
                        {
                            part.Abandon();
                            return new Attempt(true, Describe(e));
                        }

                        if (read == 0)
                        {
                            break;
                        }

                        if (info.SizeBytes > 0 && (ulong)(part.Received + read) > info.SizeBytes)
                        {
                            // Never write past the announced size: a wrong object must not fill the disk.
                            _writer.Reject(part, $"image {info.Index}: the store sent more than the announced {info.SizeBytes} bytes");
                            return new Attempt(false, null);
                        }

                        await part.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
                    }
                }
            }
            catch
            {
                part.Abandon();
                throw;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }

            await _writer.CommitAsync(part, viaUrl: true, cancellationToken);
            return new Attempt(false, null);
        }
    }

    /// <summary>A failure of the transfer itself (not of this machine's disk, not the user's Ctrl-C).</summary>
    private static bool IsTransfer(Exception e, CancellationToken cancellationToken) =>
        !cancellationToken.IsCancellationRequested && e is HttpRequestException or IOException or TaskCanceledException;

    private static string Describe(Exception e) => e switch
    {
        TaskCanceledException => "timed out",
        HttpRequestException { HttpRequestError: var error } when error != HttpRequestError.Unknown => $"{error} ({CliErrors.OneLine(e.Message)})",
        _ => CliErrors.OneLine(e.Message),
    };

    /// <summary>How one GET went: <see cref="Reason"/> null when the image is dealt with; else whether a retry may help.</summary>
    private readonly record struct Attempt(bool Retry, string? Reason);
}
