using RenderFarm.Diffusion;
using RenderFarm.GenerationRules;
using RenderFarm.Worker;

namespace RenderFarm.Farm.Tests.Infrastructure;

/// <summary>
/// The real pipeline of a model, with two handles a test holds so that what it observes does not depend on timing:
/// a render can be held right after it reported a preview (the preview is then the image's latest state until the
/// test lets go) or, for a prompt containing a marker, its first step; and renders of prompts containing a marker can be
/// made to fail as the input's fault.
/// </summary>
public sealed class ControlledRenderer(IShardRenderer inner) : IShardRenderer
{
    private readonly object _gate = new();
    private Hold? _armed;
    private readonly List<(string Marker, Hold Hold)> _firstSteps = [];
    private volatile string? _failMarker;

    /// <summary>The next render step that carries a preview blocks, after reporting it, until the hold is released.</summary>
    public Hold HoldAtNextPreview()
    {
        lock (_gate)
        {
            if (_armed is { Released: false }) throw new InvalidOperationException("a hold is already armed");
            return _armed = new Hold();
        }
    }

    /// <summary>
    /// Arms a hold on the next preview, then releases <paramref name="held"/>: the render it blocks stops again at its
    /// very next preview (arming after a release would race the render past it).
    /// </summary>
    public Hold HoldAtNextPreviewAfter(Hold held)
    {
        lock (_gate)
        {
            if (!ReferenceEquals(_armed, held) || !held.Held.IsCompleted) throw new InvalidOperationException("the hold to pass on is not the armed one, or holds nothing");
            _armed = new Hold();
            held.Release();
            return _armed;
        }
    }

    /// <summary>
    /// The next render of a batch with a prompt containing <paramref name="marker"/> blocks after reporting its first
    /// step, until the hold is released or the render is stopped (<see cref="Hold.Stopped"/>); later renders pass.
    /// </summary>
    public Hold HoldFirstStepOf(string marker)
    {
        var hold = new Hold();
        lock (_gate) _firstSteps.Add((marker, hold));
        return hold;
    }

    /// <summary>Renders of a batch with a prompt containing <paramref name="marker"/> fail (input's fault) until <see cref="StopFailing"/>.</summary>
    public void FailPromptsContaining(string marker) => _failMarker = marker;

    public void StopFailing() => _failMarker = null;

    public Task<IReadOnlyList<GeneratedImage>> RenderAsync(GenerationRequest request, IProgress<StepProgress> progress, CancellationToken cancellationToken)
    {
        ThrowIfFailing(request);
        return inner.RenderAsync(request, new HoldingProgress(this, progress, cancellationToken, TakeFirstStepHold(request)), cancellationToken);
    }

    public Task<RenderedBatch> RenderOnDeviceAsync(GenerationRequest request, IProgress<StepProgress> progress, CancellationToken cancellationToken)
    {
        ThrowIfFailing(request);
        return inner.RenderOnDeviceAsync(request, new HoldingProgress(this, progress, cancellationToken, TakeFirstStepHold(request)), cancellationToken);
    }

    private void ThrowIfFailing(GenerationRequest request)
    {
        if (_failMarker is { } marker && request.Images.Any(i => i.Prompt.Contains(marker, StringComparison.Ordinal)))
            throw new GenerationFailedException(GenerationFailureKind.Input, $"the test refuses prompts containing '{marker}'");
    }

    public Task WarmUpAsync(CancellationToken cancellationToken) => inner.WarmUpAsync(cancellationToken);

    /// <summary>Lets a held render go on (before its worker stops, which waits for it).</summary>
    public void ReleaseHold()
    {
        lock (_gate)
        {
            _armed?.Release();
            foreach (var (_, hold) in _firstSteps) hold.Release();
        }
    }

    public void Dispose()
    {
        ReleaseHold();
        inner.Dispose();
    }

    private Hold? TakeFirstStepHold(GenerationRequest request)
    {
        lock (_gate)
        {
            var i = _firstSteps.FindIndex(h => request.Images.Any(image => image.Prompt.Contains(h.Marker, StringComparison.Ordinal)));
            if (i < 0) return null;
            var hold = _firstSteps[i].Hold;
            _firstSteps.RemoveAt(i);
            return hold;
        }
    }

    private Hold? TakeArmed()
    {
        lock (_gate) return _armed is { Held.IsCompleted: false, Released: false } ? _armed : null;
    }

    /// <summary>One hold: <see cref="Held"/> completes when a render stopped at a preview; <see cref="Release"/> lets it go on.</summary>
    public sealed class Hold
    {
        private readonly TaskCompletionSource _held = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly ManualResetEventSlim _released = new();

        public Task Held => _held.Task;

        /// <summary>Completes when the held render was stopped (its cancellation token) before the hold was released.</summary>
        public Task Stopped => _stopped.Task;
        public bool Released => _released.IsSet;

        public void Release() => _released.Set();

        internal void Block(CancellationToken cancellationToken)
        {
            _held.TrySetResult();
            try
            {
                _released.Wait(cancellationToken);
            }
            catch (OperationCanceledException)
            {
                _stopped.TrySetResult();
                throw;
            }
        }
    }

    /// <summary>
    /// Forwards every step, then blocks the render thread at its first step if it holds a first-step hold, and at the
    /// first preview while a hold is armed.
    /// </summary>
    private sealed class HoldingProgress(ControlledRenderer owner, IProgress<StepProgress> progress, CancellationToken cancellationToken,
        Hold? firstStep) : IProgress<StepProgress>
    {
        private Hold? _firstStep = firstStep;

        public void Report(StepProgress value)
        {
            progress.Report(value);
            if (Interlocked.Exchange(ref _firstStep, null) is { } first) first.Block(cancellationToken);
            if (value.Preview is not null && owner.TakeArmed() is { } hold) hold.Block(cancellationToken);
        }
    }
}
