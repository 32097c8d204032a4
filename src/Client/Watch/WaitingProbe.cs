using RenderFarm.Client.Connection;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Watch;

/// <summary>
/// While <c>farm watch</c> follows a job that sits queued with no shard started, asks the coordinator why: after
/// <see cref="FarmCliHost.WaitingCheckInterval"/> (and again every interval) it looks up the job's model (GetJob, once)
/// and the models workers serve (ListModels). A model with no worker becomes "waiting: no worker serves model X" on
/// the observer; the notice is cleared when that changes. The probe never fails the watch: a failed look-up is
/// simply retried at the next interval.
/// </summary>
public sealed class WaitingProbe(CoordinatorConnection coordinator, string jobId, TimeSpan interval)
{
    private string? _model;

    /// <summary>Runs beside <paramref name="watcher"/> until cancelled or until a shard starts.</summary>
    public async Task RunAsync(JobWatcher watcher, IJobWatchObserver observer, CancellationToken cancellationToken)
    {
        var (state, gate) = (watcher.State, watcher.Gate);
        string? shown = null;
        try
        {
            while (true)
            {
                await Task.Delay(interval, cancellationToken);
                lock (gate)
                {
                    if (state.AnyShardStarted || state.IsFinished)
                    {
                        return;
                    }
                }

                string? reason;
                try
                {
                    reason = await ReasonAsync(cancellationToken);
                }
                catch (Exception) when (!cancellationToken.IsCancellationRequested)
                {
                    continue; // a coordinator without ListModels, a blip: the watch itself goes on
                }

                lock (gate)
                {
                    if (reason != shown && !state.AnyShardStarted && !state.IsFinished)
                    {
                        shown = reason;
                        observer.OnWaiting(reason, state);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>The notice for the job's model, or null when some worker serves it.</summary>
    public async Task<string?> ReasonAsync(CancellationToken cancellationToken)
    {
        _model ??= (await coordinator.Client.GetJobAsync(new GetJobRequest { JobId = jobId }, coordinator.CallOptions(cancellationToken))).Params?.Model;
        if (string.IsNullOrEmpty(_model))
        {
            return null;
        }

        var models = await coordinator.Client.ListModelsAsync(new ListModelsRequest(), coordinator.CallOptions(cancellationToken));
        return models.Models.Any(m => m.Name == _model && m.Workers > 0)
            ? null
            : $"waiting: no worker serves model {_model} (farm models lists what the farm can render)";
    }
}
