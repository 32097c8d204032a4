using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using Polly;
using RenderFarm.Client.Cli;
using RenderFarm.Client.Connection;
using RenderFarm.Protocol;
using RenderFarm.Shared;

namespace RenderFarm.Client.Pull;

/// <summary>
/// The coordinator's DownloadResults streams of one pull, read into a <see cref="ResultDownloader"/>: one stream per
/// partition at once, each resumed after a transient failure (skipping what the pull already has); a pass asking for
/// presigned URLs, then one of bytes for the images whose URL failed.
/// </summary>
public sealed class ResultStreams
{
    /// <summary>Times one partition's stream is opened before its failure ends the pull.</summary>
    public const int MaxStreamAttempts = 5;

    private readonly CoordinatorConnection _coordinator;
    private readonly string _jobId;
    private readonly Partitions _partitions;
    private readonly ResultDownloader _downloader;
    private readonly IPullProgress _progress;
    private readonly ResiliencePipeline _resume;

    /// <param name="reconnect">The back-off between attempts at one partition's stream.</param>
    /// <param name="time">The clock the back-off waits on.</param>
    public ResultStreams(
        CoordinatorConnection coordinator, string jobId, Partitions partitions, ResultDownloader downloader, IPullProgress progress,
        ReconnectPolicy reconnect, TimeProvider time)
    {
        _coordinator = coordinator;
        _jobId = jobId;
        _partitions = partitions;
        _downloader = downloader;
        _progress = progress;
        var retry = reconnect.Retry(MaxStreamAttempts);
        // GetJob just worked, so a failure here is a broken stream, not a wrong address: resume, skipping what we have.
        retry.ShouldHandle = args => ValueTask.FromResult(
            args.Outcome.Exception is { } e && CliErrors.IsTransient(e, args.Context.CancellationToken));
        retry.OnRetry = args =>
        {
            progress.Notice(string.Create(CultureInfo.InvariantCulture,
                $"download interrupted ({CliErrors.Reason(args.Outcome.Exception!)}); resuming in {args.RetryDelay.TotalSeconds:0.##}s"));
            return ValueTask.CompletedTask;
        };
        _resume = new ResiliencePipelineBuilder { TimeProvider = time }.AddRetry(retry).Build();
    }

    /// <summary>
    /// One pass asking for presigned URLs (when allowed), then — for images whose URL failed, or everything left if
    /// the URLs were given up on — one pass of bytes through the coordinator.
    /// </summary>
    public async Task DownloadAsync(bool presignedUrls, CancellationToken cancellationToken)
    {
        await PassAsync(presignedUrls, cancellationToken);
        if (!presignedUrls)
        {
            return;
        }

        var abandoned = _downloader.UrlsAbandoned;
        var (count, reason) = _downloader.TakeFallback();
        if (abandoned is not null)
        {
            _progress.Notice($"the result store's URLs keep failing ({abandoned}); streaming the remaining images through the coordinator");
        }
        else if (count > 0)
        {
            _progress.Notice(string.Create(CultureInfo.InvariantCulture,
                $"{count} images could not be fetched from the result store ({reason}); streaming them through the coordinator"));
        }
        else
        {
            return;
        }

        await PassAsync(presignedUrls: false, cancellationToken);
    }

    /// <summary>
    /// Reads one DownloadResults stream per partition at once into one set of writers. The coordinator walks each
    /// stream's images one after another (a database read, and a store read or presign, per image), so a 100k-image
    /// job listed over one stream waits on 100k round trips in a row; partitions overlap them.
    /// </summary>
    private async Task PassAsync(bool presignedUrls, CancellationToken cancellationToken)
    {
        using var session = _downloader.Start(cancellationToken);
        ExceptionDispatchInfo? readFailure = null;
        try
        {
            await Task.WhenAll(Enumerable.Range(0, _partitions.Count).Select(partition =>
                ReadPartitionAsync(partition, session, presignedUrls, cancellationToken)));
        }
        catch (Exception e)
        {
            readFailure = ExceptionDispatchInfo.Capture(e);
        }

        await session.CompleteAsync(); // a writer's failure (disk full) outranks a stream's
        readFailure?.Throw();
    }

    /// <summary>Reads one partition's stream to its end, opened again (asking only for what is missing) after a transient failure.</summary>
    private async Task ReadPartitionAsync(int partition, ResultDownloader.Session session, bool presignedUrls, CancellationToken cancellationToken) =>
        await _resume.ExecuteAsync(async token =>
        {
            var request = _partitions.Request(_jobId, partition, _downloader.Handled, presignedUrls);
            await session.ReadAsync(ReadAsync(request,
                () => _partitions.LegacyRequest(_jobId, partition, _downloader.Handled, presignedUrls), token));
        }, cancellationToken);

    private async IAsyncEnumerable<ResultChunk> ReadAsync(
        DownloadResultsRequest request, Func<DownloadResultsRequest> legacy, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var call = _coordinator.Client.DownloadResults(request, _coordinator.CallOptions(cancellationToken));
        try
        {
            if (request.PartitionCount > 1 && (await call.ResponseHeadersAsync).Get(FarmHeaders.Partitioned) is null)
            {
                // A coordinator from before partitions ignores them and would send this stream every image: ask it
                // again with the other partitions' indices in the skip list.
                call.Dispose();
                call = _coordinator.Client.DownloadResults(legacy(), _coordinator.CallOptions(cancellationToken));
            }
            while (await call.ResponseStream.MoveNext(cancellationToken))
            {
                yield return call.ResponseStream.Current;
            }
        }
        finally
        {
            call.Dispose();
        }
    }
}
