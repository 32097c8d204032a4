using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;

namespace RenderFarm.Diffusion.Models;

/// <summary>
/// The small graphs the pipeline builds itself and runs on the models' device beside them, so what passes between the
/// models stays there (<see cref="DiffusionOptions.StepOnDevice"/>): guidance and the scheduler's step
/// (<see cref="StepGraph"/>), the sum of a step's ControlNet residuals (<see cref="ResidualSumGraph"/>) and the UNet's
/// input cast for a ControlNet of another element type (<see cref="CastGraph"/>). One session per
/// graph, made on first use with the UNet's provider and device; runs are counted and timed per kind; failures say how
/// to do without.
/// </summary>
internal sealed class DeviceGraphs : IDisposable
{
    private readonly Func<SessionOptions> _sessionOptions;
    private readonly Dictionary<string, InferenceSession> _sessions = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (long Runs, long Ticks)> _statistics = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    /// <param name="sessionOptions">Options for each session: the UNet's device and provider (no CUDA graph: these run apart from the UNet's).</param>
    public DeviceGraphs(Func<SessionOptions> sessionOptions) => _sessionOptions = sessionOptions;

    /// <summary>The session of the graph named <paramref name="key"/>, built from <paramref name="model"/> the first time.</summary>
    public InferenceSession Session(string key, Func<byte[]> model)
    {
        lock (_lock)
        {
            if (!_sessions.TryGetValue(key, out var session))
            {
                using var options = _sessionOptions();
                try
                {
                    _sessions[key] = session = new InferenceSession(model(), options);
                }
                catch (OnnxRuntimeException e)
                {
                    throw Failed(e);
                }
            }
            return session;
        }
    }

    /// <summary>Runs of each kind of graph (<c>scheduler_step</c>, <c>controlnet_sum</c>, <c>controlnet_cast</c>) and the time in them.</summary>
    public IReadOnlyList<ComponentStatistics> Statistics
    {
        get
        {
            lock (_lock)
            {
                return _statistics.Select(s => new ComponentStatistics(s.Key, s.Value.Runs, Stopwatch.GetElapsedTime(0, s.Value.Ticks))).ToArray();
            }
        }
    }

    /// <summary><paramref name="binding"/> on <paramref name="session"/>, timed as <paramref name="kind"/>.</summary>
    public void Run(string kind, InferenceSession session, RunOptions runOptions, OrtIoBinding binding)
    {
        long start = Stopwatch.GetTimestamp();
        try
        {
            session.RunWithBinding(runOptions, binding);
        }
        catch (OnnxRuntimeException e) when (!runOptions.Terminate)
        {
            throw Failed(e);
        }
        finally
        {
            long ticks = Stopwatch.GetTimestamp() - start;
            lock (_lock)
            {
                var (runs, total) = _statistics.GetValueOrDefault(kind);
                _statistics[kind] = (runs + 1, total + ticks);
            }
        }
    }

    /// <summary>A failure of one of these graphs, classified as ONNX Runtime's are, saying how to do without them.</summary>
    private static GenerationFailedException Failed(OnnxRuntimeException e) =>
        new(GenerationFailure.Classify(e.Message),
            "Stepping on the device failed (StepOnDevice = false, Farm:StepOnDevice=false on a worker, steps on the host): " +
            ExecutionProviders.FirstLine(e.Message), e);

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var session in _sessions.Values) session.Dispose();
            _sessions.Clear();
        }
    }
}
