using System.Diagnostics;

namespace RenderFarm.Diffusion;

/// <summary>
/// What the library reports to its host while it works, for logs and status, through a <see cref="DiagnosticListener"/>
/// named <see cref="ListenerName"/> (the library has no logger of its own): events named below, each with an
/// <see cref="EngineCacheEvent"/>.
/// </summary>
public static class DiffusionDiagnostics
{
    public const string ListenerName = "RenderFarm.Diffusion";

    /// <summary>A session waits for another process building (or loading) the TensorRT engine in its cache folder.</summary>
    public const string EngineCacheWaiting = "TensorRtEngineCacheWaiting";

    /// <summary>A TensorRT engine cache folder a writer did not finish was set aside; its engine is built anew.</summary>
    public const string EngineCacheSetAside = "TensorRtEngineCacheSetAside";

    internal static readonly DiagnosticListener Listener = new(ListenerName);

    /// <summary>
    /// Calls <paramref name="received"/> with each event's name and value until the result is disposed, inline on the
    /// thread that reports it (which an exception from it does not fail).
    /// </summary>
    public static IDisposable Subscribe(Action<string, EngineCacheEvent> received) => DiffusionEvents.Subscribe(received);

    internal static void Write(string name, EngineCacheEvent value)
    {
        try
        {
            if (Listener.IsEnabled(name)) Listener.Write(name, value);
        }
        catch (Exception)
        {
            // A host's observer runs inline; what it does with a report must not fail the work reported on.
        }
    }
}

/// <summary>A TensorRT engine cache event: the component's model file, its cache folder and, when set aside, where to.</summary>
public sealed record EngineCacheEvent(string ModelFile, string Folder, string? SetAsideAs = null);
