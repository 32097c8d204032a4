using RenderFarm.Diffusion;
using RenderFarm.GenerationRules;
using RenderFarm.Worker;

namespace RenderFarm.Farm.Tests.Infrastructure;

/// <summary>
/// The real pipeline of a model, with two handles a test holds so that what it observes does not depend on timing:
/// a render can be held right after it reported a preview (the preview is then the image's latest state until the
/// test lets go), and renders of prompts containing a marker can be made to fail as the input's fault.
/// </summary>
public sealed class ControlledRenderer(IShardRenderer inner) : IShardRenderer
{
    private readonly object _gate = new();
    private Hold? _armed;
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

    /// <summary>Renders of a batch with a prompt containing <paramref name="marker"/> fail (input's fault) until <see cref="StopFailing"/>.</summary>
    public void FailPromptsContaining(string marker) => _failMarker = marker;

    public void StopFailing() => _failMarker = null;

    public Task<IReadOnlyList<GeneratedImage>> RenderAsync(GenerationRequest request, IProgress<StepProgress> progress, CancellationToken cancellationToken)
    {
        ThrowIfFailing(request);
        return inner.RenderAsync(request, new HoldingProgress(this, progress, cancellationToken), cancellationToken);
    }

    public Task<RenderedBatch> RenderOnDeviceAsync(GenerationRequest request, IProgress<StepProgress> progress, CancellationToken cancellationToken)
    {
        ThrowIfFailing(request);
        return inner.RenderOnDeviceAsync(request, new HoldingProgress(this, progress, cancellationToken), cancellationToken);
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
        lock (_gate) _armed?.Release();
    }

    public void Dispose()
    {
        ReleaseHold();
        inner.Dispose();
    }

    private Hold? TakeArmed()
    {
        lock (_gate) return _armed is { Held.IsCompleted: false, Released: false } ? _armed : null;
    }

    /// <summary>One hold: <see cref="Held"/> completes when a render stopped at a preview; <see cref="Release"/> lets it go on.</summary>
    public sealed class Hold
    {
        private readonly TaskCompletionSource _held = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly ManualResetEventSlim _released = new();

        public Task Held => _held.Task;
        public bool Released => _released.IsSet;

        public void Release() => _released.Set();

        internal void Block(CancellationToken cancellationToken)
        {
            _held.TrySetResult();
            _released.Wait(cancellationToken);
        }
    }

    /// <summary>Forwards every step, then blocks the render thread at the first preview while a hold is armed.</summary>
    private sealed class HoldingProgress(ControlledRenderer owner, IProgress<StepProgress> progress, CancellationToken cancellationToken) : IProgress<StepProgress>
    {
        public void Report(StepProgress value)
        {
            progress.Report(value);
            if (value.Preview is not null && owner.TakeArmed() is { } hold) hold.Block(cancellationToken);
        }
    }
}
