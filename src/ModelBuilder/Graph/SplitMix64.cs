namespace RenderFarm.ModelBuilder.Graph;

/// <summary>
/// SplitMix64: a tiny, fully specified PRNG, so that weights are byte-identical across .NET versions
/// (System.Random's algorithm is an implementation detail).
/// </summary>
public struct SplitMix64(ulong state)
{
    private ulong _state = state;

    public ulong Next()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in [0, 1) with 53 bits of precision.</summary>
    public double NextDouble() => (Next() >> 11) * (1.0 / (1UL << 53));

    /// <summary>A stream seed for one named tensor: the global seed mixed with a stable hash of the name.</summary>
    public static ulong SeedFor(ulong seed, string name)
    {
        ulong hash = 0xCBF29CE484222325UL; // FNV-1a 64
        foreach (char c in name)
        {
            hash ^= c;
            hash *= 0x100000001B3UL;
        }
        var mix = new SplitMix64(seed ^ hash);
        return mix.Next();
    }
}
