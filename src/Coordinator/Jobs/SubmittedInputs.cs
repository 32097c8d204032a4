using System.Security.Cryptography;
using RenderFarm.Imaging;
using RenderFarm.Protocol;
using RenderFarm.Shared;
using StackExchange.Redis;
using RenderFarm.FarmState;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// The init images and masks of one submission. Chunks of an image are joined as they arrive; a complete image is
/// checked (PNG or JPEG, bytes, dimensions read from its header before any pixel is decoded, then decoded completely
/// with the workers' own decoder, <see cref="ImageDecoder"/>) and stored once per content in the job's inputs hash
/// under its sha256, which is what the job's images refer to. Only one image is ever in memory. An image that does not decode (a truncated or corrupt
/// file behind a valid header) fails the submission at the first prompt that uses it, naming the prompt and the image,
/// or at the end if none does.
/// </summary>
public sealed class SubmittedInputs(IDatabase db, string jobId, CoordinatorOptions limits, TimeSpan stagingTtl)
{
    private const int MaxNameLength = 128;

    private readonly Dictionary<string, string> _fieldByName = new(StringComparer.Ordinal);
    private readonly HashSet<string> _stored = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _undecodable = new(StringComparer.Ordinal);
    private string? _pendingName;
    private MemoryStream? _pending;
    private long _storedBytes;

    /// <summary>Distinct images stored for the job so far.</summary>
    public int Count => _stored.Count;

    public async Task AddAsync(InputImage chunk)
    {
        var name = chunk.Name;
        if (_pendingName is not null && name != _pendingName)
            throw Unfinished();
        if (_pendingName is null)
        {
            if (name.Length is 0 or > MaxNameLength || name.Any(char.IsControl))
                throw BatchValidator.Invalid($"input_image.name must be 1-{MaxNameLength} printable characters (got '{Truncate(name)}')");
            if (_fieldByName.ContainsKey(name) || _undecodable.ContainsKey(name))
                throw BatchValidator.Invalid($"input_image '{Truncate(name)}' was already sent; later prompts refer to it by name");
            _pendingName = name;
            _pending = new MemoryStream();
        }
        if (_pending!.Length + chunk.Data.Length > limits.MaxInputImageBytes)
            throw BatchValidator.Invalid($"input_image '{Truncate(name)}' is larger than {limits.MaxInputImageBytes} bytes");
        chunk.Data.WriteTo(_pending);
        if (chunk.More) return;

        var bytes = _pending.ToArray();
        _pending = null;
        _pendingName = null;
        if (!Check(name, bytes, out var error))
        {
            _undecodable[name] = error;
            return;
        }
        var field = Convert.ToHexStringLower(SHA256.HashData(bytes));
        if (_stored.Add(field))
        {
            _storedBytes += bytes.Length;
            if (_storedBytes > limits.MaxInputBytesPerJob)
                throw BatchValidator.Invalid($"the batch's input images exceed {limits.MaxInputBytesPerJob} bytes in all; split it into several jobs");
            var key = FarmKeys.JobInputs(jobId);
            // Staged like the rest of the job: the commit persists the key, a dead submission's copy expires.
            await Task.WhenAll(db.HashSetAsync(key, field, bytes), db.KeyExpireAsync(key, stagingTtl));
        }
        _fieldByName[name] = field;
    }

    /// <summary>The inputs-hash field of an image the submission sent earlier, for a prompt's reference to it.</summary>
    public string Resolve(string name, string field)
    {
        if (_pendingName is not null) throw Unfinished();
        if (_undecodable.TryGetValue(name, out var error))
            throw BatchValidator.Invalid($"{field} '{Truncate(name)}' is not a decodable PNG or JPEG: {error}");
        return _fieldByName.TryGetValue(name, out var stored) ? stored
            : throw BatchValidator.Invalid($"{field} '{Truncate(name)}' names no input_image sent before it");
    }

    /// <summary>Fails a stream that ended in the middle of an image, or that sent an image that does not decode.</summary>
    public void CheckComplete()
    {
        if (_pendingName is not null) throw Unfinished();
        if (_undecodable.FirstOrDefault() is { Key: { } name, Value: var error })
            throw BatchValidator.Invalid($"input_image '{Truncate(name)}' is not a decodable PNG or JPEG: {error}");
    }

    private Grpc.Core.RpcException Unfinished() =>
        BatchValidator.Invalid($"input_image '{Truncate(_pendingName!)}' was not finished (its last chunk must have more = false) before the next message");

    /// <summary>Refuses what is not an image at all, or too large; false (with why) for an image that does not decode.</summary>
    private bool Check(string name, byte[] bytes, out string error)
    {
        var check = ImageDecoder.Check(bytes, limits.MaxInputImagePixels);
        error = check.Error;
        return check.Problem switch
        {
            ImageProblem.NotAnImage => throw BatchValidator.Invalid($"input_image '{Truncate(name)}' is not a PNG or JPEG image with a readable header"),
            ImageProblem.TooLarge => throw BatchValidator.Invalid($"input_image '{Truncate(name)}' {check.Error}"),
            _ => check.Decodes,
        };
    }

    private static string Truncate(string s) => BatchValidator.Truncate(s);
}
