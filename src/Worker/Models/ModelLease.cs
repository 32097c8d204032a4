namespace RenderFarm.Worker.Models;

/// <summary>
/// A model's renderer, with the LoRA variants a shard needs, held for the shard (<see cref="ModelCatalog.AcquireAsync"/>):
/// nothing it holds is evicted until it is disposed.
/// </summary>
public sealed class ModelLease(IShardRenderer renderer, Action release) : IDisposable
{
    private int _released;

    public IShardRenderer Renderer => renderer;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _released, 1) == 0) release();
    }
}
