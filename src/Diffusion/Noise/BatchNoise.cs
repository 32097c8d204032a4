using RenderFarm.Diffusion.Schedulers;

namespace RenderFarm.Diffusion.Noise;

/// <summary>
/// One seeded generator per image of a batch, as diffusers with a list of generators: each image's slice of a
/// batch tensor is <c>torch.randn([1, …], generator=generators[i])</c>, and later draws (initial latents first, then
/// per-step noise of stochastic schedulers) continue each image's own stream.
/// </summary>
public sealed class BatchNoise : IStepNoise
{
    private readonly TorchRandn[] _generators;

    public BatchNoise(IEnumerable<long> seeds, int elementsPerImage)
    {
        _generators = seeds.Select(s => new TorchRandn(s)).ToArray();
        if (elementsPerImage < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(elementsPerImage));
        }
        ElementsPerImage = elementsPerImage;
    }

    public int ElementsPerImage { get; }

    public int Count => _generators.Length;

    /// <summary>Fills the whole batch (Count · ElementsPerImage values), image i from generator i.</summary>
    public void Fill(Span<float> destination)
    {
        if (destination.Length != _generators.Length * ElementsPerImage)
        {
            throw new ArgumentException(
                $"Expected {_generators.Length} × {ElementsPerImage} values, got {destination.Length}.", nameof(destination));
        }
        for (int i = 0; i < _generators.Length; i++)
        {
            _generators[i].Fill(destination.Slice(i * ElementsPerImage, ElementsPerImage));
        }
    }
}
