namespace RenderFarm.Diffusion.Generation;

/// <summary>
/// The one thread a pipeline runs its models on. ONNX Runtime's CUDA provider keeps per-thread state — cuBLAS and
/// cuDNN handles, and the captured CUDA graphs — so generations that hop between thread-pool threads pay for new
/// handles and capture their graphs again on every new thread (on the H200, four requests in flight ran 13–17 %
/// slower than one at a time on pool threads, and 2–6 % faster on this one thread; bench/gpu.md). On the CPU provider
/// the work is ONNX Runtime's own thread pool's either way.
/// </summary>
internal sealed class ModelThread : IDisposable
{
    private readonly System.Collections.Concurrent.BlockingCollection<Action> _work = new();
    private readonly Thread _thread;

    public ModelThread(string name)
    {
        _thread = new Thread(() =>
        {
            foreach (var work in _work.GetConsumingEnumerable()) work();
        })
        {
            IsBackground = true,
            Name = name,
        };
        _thread.Start();
    }

    /// <summary>Runs <paramref name="work"/> on the thread, after what was queued before it.</summary>
    public Task<T> RunAsync<T>(Func<T> work)
    {
        var result = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        _work.Add(() =>
        {
            try
            {
                result.SetResult(work());
            }
            catch (Exception ex)
            {
                result.SetException(ex);
            }
        });
        return result.Task;
    }

    public void Dispose()
    {
        _work.CompleteAdding();
        if (Thread.CurrentThread != _thread)
        {
            _thread.Join();
        }
        _work.Dispose();
    }
}
