using System.Net.Sockets;
using Grpc.Core;
using RenderFarm.Client.Watch;

namespace RenderFarm.Client.Cli;

/// <summary>Turns any failure into one line on stderr and the matching exit code.</summary>
public static class CliErrors
{
    public static int Report(Exception exception, TextWriter stderr, string? coordinatorAddress, CancellationToken cancellationToken)
    {
        switch (exception)
        {
            case CliUsageException usage:
                stderr.WriteLine(usage.IsLocated || usage.Message.StartsWith("error:", StringComparison.Ordinal)
                    ? usage.Message
                    : "error: " + usage.Message);
                return ExitCodes.UsageError;
            case OperationCanceledException when cancellationToken.IsCancellationRequested:
            case RpcException { StatusCode: StatusCode.Cancelled } when cancellationToken.IsCancellationRequested:
                stderr.WriteLine("interrupted");
                return ExitCodes.Interrupted;
            case WatchConnectionLostException lost:
                stderr.WriteLine("error: " + lost.Message);
                return ExitCodes.Unreachable;
            case RpcException rpc when IsUnreachable(rpc):
                stderr.WriteLine($"error: cannot reach coordinator at {coordinatorAddress ?? "?"} (is it running?)");
                return ExitCodes.Unreachable;
            case RpcException rpc:
                stderr.WriteLine($"error: {Describe(rpc)}");
                return rpc.StatusCode switch
                {
                    StatusCode.NotFound => ExitCodes.NotFound,
                    StatusCode.InvalidArgument or StatusCode.OutOfRange => ExitCodes.UsageError,
                    StatusCode.Unavailable => ExitCodes.Unreachable,
                    _ => ExitCodes.Failed,
                };
            case HttpRequestException or SocketException:
                stderr.WriteLine($"error: cannot reach coordinator at {coordinatorAddress ?? "?"} (is it running?)");
                return ExitCodes.Unreachable;
            case IOException io:
                stderr.WriteLine($"error: {io.Message}");
                return ExitCodes.Failed;
            case UnauthorizedAccessException denied:
                stderr.WriteLine($"error: {denied.Message}");
                return ExitCodes.Failed;
            case FarmOperationException failed:
                stderr.WriteLine("error: " + failed.Message);
                return ExitCodes.Failed;
            default:
                stderr.WriteLine($"error: unexpected {exception.GetType().Name}: {exception.Message}");
                return ExitCodes.Failed;
        }
    }

    /// <summary>"detail (StatusCode)", the detail falling back to the code's meaning when the server sent none.</summary>
    public static string Describe(RpcException rpc)
    {
        var detail = string.IsNullOrWhiteSpace(rpc.Status.Detail) ? "(no detail from the coordinator)" : OneLine(rpc.Status.Detail);
        return $"{detail} ({rpc.StatusCode})";
    }

    /// <summary>True for failures of the connection itself (nothing listening, DNS, TLS, reset before a reply).</summary>
    public static bool IsUnreachable(RpcException rpc) =>
        rpc.StatusCode == StatusCode.Unavailable &&
        (FindInner<SocketException>(rpc) is not null || FindInner<HttpRequestException>(rpc) is not null ||
         rpc.Status.Detail.Contains("Error connecting to subchannel", StringComparison.Ordinal) ||
         rpc.Status.Detail.Contains("Error starting gRPC call", StringComparison.Ordinal));

    /// <summary>Transport failures worth a reconnect during a long stream (coordinator restart, proxy reset).</summary>
    public static bool IsTransient(Exception exception, CancellationToken cancellationToken) =>
        !cancellationToken.IsCancellationRequested && exception switch
        {
            RpcException rpc => rpc.StatusCode is StatusCode.Unavailable or StatusCode.Internal or StatusCode.Unknown
                or StatusCode.Aborted or StatusCode.DeadlineExceeded or StatusCode.ResourceExhausted or StatusCode.Cancelled,
            HttpRequestException or IOException or SocketException => true,
            _ => false,
        };

    /// <summary>Short reason for a transport failure, for one-line messages.</summary>
    public static string Reason(Exception e) => e switch
    {
        RpcException rpc => Describe(rpc),
        _ => OneLine(e.Message),
    };

    /// <summary>Server-sent text on one line, without control characters (escape sequences) that would act on the terminal.</summary>
    public static string OneLine(string text) =>
        RenderFarm.Shared.DisplayText.Clean(text.ReplaceLineEndings(" ")).Trim();

    private static T? FindInner<T>(Exception exception) where T : Exception
    {
        for (var e = exception.InnerException; e is not null; e = e.InnerException)
        {
            if (e is T match)
            {
                return match;
            }
        }

        return null;
    }
}
