using System.Collections.Concurrent;
using RenderFarm.Protocol;

namespace RenderFarm.Worker;

/// <summary>
/// What this worker has learnt about its (device) memory, per model, from running out of it: the smallest batch × pixels
/// that ran out, the largest that rendered below it, and the smallest single image that ran out. Renders are planned
/// with it (smaller batches; nothing that large again) and the coordinator is told (<see cref="ModelLimit"/>, in the
/// hello and every shard end) so it sizes shards to fit and refuses sizes no worker can render. Kept while the process
/// lives: a restart (new device, other settings) learns afresh.
/// </summary>
public sealed class ModelMemory
{
    private readonly ConcurrentDictionary<string, State> _models = new(StringComparer.Ordinal);

    private sealed class State
    {
        public ulong Fit;        // largest batch × pixels rendered, below OomBatch when that is known
        public ulong OomBatch;   // smallest batch × pixels (batch ≥ 2) that ran out of memory; 0 = none
        public ulong OomImage;   // fewest pixels at which one image alone ran out of memory; 0 = none
    }

    private State For(string model) => _models.GetOrAdd(model, _ => new State());

    /// <summary>The pixels per image at which one image of <paramref name="model"/> already ran out of memory here, if <paramref name="pixels"/> is that many or more.</summary>
    public ulong? KnownTooLarge(string model, ulong pixels)
    {
        var state = For(model);
        lock (state) return state.OomImage > 0 && pixels >= state.OomImage ? state.OomImage : null;
    }

    /// <summary>Images per model run for <paramref name="images"/> images of <paramref name="pixels"/> pixels: all of them unless a batch that large ran out before.</summary>
    public int BatchFor(string model, int images, ulong pixels)
    {
        var state = For(model);
        lock (state)
            return state.OomBatch == 0 || (ulong)images * pixels < state.OomBatch
                ? images
                : (int)Math.Clamp((state.OomBatch - 1) / pixels, 1, (ulong)images);
    }

    public void Rendered(string model, int batch, ulong pixels)
    {
        var state = For(model);
        var product = (ulong)batch * pixels;
        lock (state)
            if (state.OomBatch == 0 || product < state.OomBatch) state.Fit = Math.Max(state.Fit, product);
    }

    public void RanOutOfMemory(string model, int batch, ulong pixels)
    {
        var state = For(model);
        lock (state)
        {
            if (batch == 1)
            {
                state.OomImage = state.OomImage == 0 ? pixels : Math.Min(state.OomImage, pixels);
                return;
            }
            var product = (ulong)batch * pixels;
            state.OomBatch = state.OomBatch == 0 ? product : Math.Min(state.OomBatch, product);
            if (state.Fit >= state.OomBatch) state.Fit = 0; // learnt again from the next render that fits
        }
    }

    /// <summary>What the coordinator should know about <paramref name="model"/>; null until it ran out of memory.</summary>
    public ModelLimit? LimitOf(string model)
    {
        if (!_models.TryGetValue(model, out var state)) return null;
        lock (state)
        {
            if (state.OomBatch == 0 && state.OomImage == 0) return null;
            return new ModelLimit
            {
                Model = model,
                MaxBatchPixels = state.OomBatch == 0 ? 0 : state.Fit > 0 ? state.Fit : state.OomBatch - 1,
                OomImagePixels = state.OomImage,
            };
        }
    }

    /// <summary>Every limit known, for the hello.</summary>
    public IEnumerable<ModelLimit> Known => _models.Keys.Select(LimitOf).OfType<ModelLimit>();
}
