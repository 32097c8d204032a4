using System.Net;

namespace RenderFarm.Coordinator.Storage;

/// <summary>An S3 request failed; the message names the operation, key and S3 error code (never credentials).</summary>
public sealed class S3StorageException(HttpStatusCode status, string code, string message, string key, Exception? inner = null)
    : IOException(message, inner)
{
    public HttpStatusCode Status { get; } = status;
    public string Code { get; } = code;
    public string Key { get; } = key;
}
