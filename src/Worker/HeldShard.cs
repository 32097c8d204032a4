using System.Runtime.ExceptionServices;
using RenderFarm.Diffusion;
using RenderFarm.FarmState.TaskStreams;

namespace RenderFarm.Worker;

/// <summary>
/// A shard this worker holds, from the moment it is pulled (ahead, as a prefetch) until its last report is sent: its
/// claim (the prefetch's, then the started delivery's), the pipeline request made from it, and why it was stopped, if it
/// was. <see cref="WorkerLoop"/> renews the claim throughout.
/// </summary>
public sealed class HeldShard(ClaimedShard claimed) : IDisposable
{
    private GenerationRequest? _request;
    private ExceptionDispatchInfo? _unpreparable;

    public ClaimedShard Claimed { get; set; } = claimed;

    /// <summary>Cancels the shard's render or its reports.</summary>
    public CancellationTokenSource Stop { get; } = new();

    /// <summary>Its job was cancelled.</summary>
    public bool JobCancelled { get; set; }

    /// <summary>Its claim was taken over by another worker (the lease lapsed), or acknowledged under it.</summary>
    public bool LeaseLost { get; set; }

    /// <summary>
    /// Rendered, its reports going out (<see cref="ShardCompletion.FinishAsync"/>): a claim found gone now is one the
    /// coordinator acknowledged from the images it got, and stops the renewals, not the reports.
    /// </summary>
    public bool Reporting { get; set; }

    /// <summary>Its render stalled and this delivery was failed (<see cref="RenderWatchdog"/>).</summary>
    public bool Stalled { get; set; }

    /// <summary>The renewal of the current claim, and how to stop it.</summary>
    public (Task Loop, CancellationTokenSource Stop)? Renewal { get; set; }

    /// <summary>The request is made while the shard waits its turn (inputs fetched from Redis).</summary>
    public void Prepared(GenerationRequest request) => _request = request;

    /// <summary>The request could not be made: the shard fails with this when it starts (like any render failure).</summary>
    public void Unpreparable(Exception error) => _unpreparable = ExceptionDispatchInfo.Capture(error);

    /// <summary>The pipeline request; throws what preparing it threw.</summary>
    public GenerationRequest Request()
    {
        _unpreparable?.Throw();
        return _request ?? throw new InvalidOperationException("the shard was started before it was prepared");
    }

    public void Dispose() => Stop.Dispose();
}
