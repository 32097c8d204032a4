namespace RenderFarm.Diffusion.Noise;

/// <summary>
/// Reproduces PyTorch CPU <c>torch.randn(shape, generator=torch.Generator().manual_seed(seed))</c> for float32,
/// so a seed gives the same initial latents as diffusers on CPU.
/// <para>Algorithm (ATen: CPUGeneratorImpl, MT19937RNGEngine.h, TransformationHelper.h, DistributionsHelper.h,
/// native/cpu/DistributionTemplates.h):</para>
/// <list type="bullet">
/// <item>Generator: mt19937 seeded with the low 32 bits of the seed (see <see cref="Mt19937"/>);
/// <c>random()</c> is one 32-bit word, <c>random64()</c> is two words, the first one high.</item>
/// <item>Uniform float in [0,1): <c>(random() &amp; (2^24−1)) · 2^−24</c>; uniform double: <c>(random64() &amp; (2^53−1)) · 2^−53</c>.</item>
/// <item>numel ≥ 16 (contiguous float32, the <c>normal_fill</c> path): first fill every element with a uniform float,
/// then for each complete block of 16 apply Box–Muller pairwise: for j in 0..7, u1 = 1 − d[j], u2 = d[j+8],
/// r = sqrt(−2·ln u1), θ = 2π·u2, d[j] = r·cos θ, d[j+8] = r·sin θ. When numel % 16 ≠ 0 the last 16 elements
/// are redrawn as fresh uniforms (16 more words) and transformed again as one block, overwriting the
/// overlap with the previous block.</item>
/// <item>numel &lt; 16 (the serial <c>normal_distribution&lt;double&gt;</c> path): each element takes the cached second
/// value of the previous pair if there is one; otherwise draws u1, u2 as uniform doubles, r = sqrt(−2·log1p(−u2)),
/// θ = 2π·u1, returns r·cos θ and caches r·sin θ. The cache lives in the generator and is cleared by seeding.</item>
/// </list>
/// PyTorch's AVX2 build evaluates log/sin/cos with vectorised approximations, so individual values can differ from
/// this one in the last bit or two of float32; sequences, ordering and consumption of random words are identical.
/// </summary>
public sealed class TorchRandn
{
    private readonly Mt19937 _engine;
    private double? _nextDoubleNormal;

    /// <summary>Equivalent of <c>torch.Generator().manual_seed(seed)</c>.</summary>
    public TorchRandn(long seed) : this(unchecked((ulong)seed)) { }

    /// <summary>Equivalent of <c>torch.Generator().manual_seed(seed)</c>.</summary>
    public TorchRandn(ulong seed)
    {
        _engine = new Mt19937(seed);
    }

    /// <summary>The generator's next 32 random bits (PyTorch's <c>random()</c>).</summary>
    public uint NextUInt32() => _engine.NextUInt32();

    /// <summary>Draws <c>torch.randn</c> of <paramref name="destination"/>.Length elements (float32, contiguous).</summary>
    public void Fill(Span<float> destination)
    {
        int size = destination.Length;
        if (size >= 16)
        {
            FillVectorPath(destination);
        }
        else
        {
            for (int i = 0; i < size; i++)
            {
                destination[i] = (float)NextDoubleNormal();
            }
        }
    }

    /// <summary>Allocates and draws <c>torch.randn(count)</c>.</summary>
    public float[] Next(int count)
    {
        var result = new float[count];
        Fill(result);
        return result;
    }

    private void FillVectorPath(Span<float> data)
    {
        int size = data.Length;
        for (int i = 0; i < size; i++)
        {
            data[i] = NextUniformFloat();
        }
        for (int i = 0; i + 16 <= size; i += 16)
        {
            BoxMuller16(data.Slice(i, 16));
        }
        if (size % 16 != 0)
        {
            var tail = data.Slice(size - 16, 16);
            for (int i = 0; i < 16; i++)
            {
                tail[i] = NextUniformFloat();
            }
            BoxMuller16(tail);
        }
    }

    private static void BoxMuller16(Span<float> block)
    {
        for (int j = 0; j < 8; j++)
        {
            float u1 = 1f - block[j];
            float u2 = block[j + 8];
            float radius = MathF.Sqrt(-2f * MathF.Log(u1));
            float theta = (float)(2.0 * Math.PI * u2);
            block[j] = radius * MathF.Cos(theta);
            block[j + 8] = radius * MathF.Sin(theta);
        }
    }

    private float NextUniformFloat() => (_engine.NextUInt32() & ((1u << 24) - 1)) * (1.0f / (1 << 24));

    private double NextUniformDouble() => (_engine.NextUInt64() & ((1ul << 53) - 1)) * (1.0 / (1ul << 53));

    private double NextDoubleNormal()
    {
        if (_nextDoubleNormal is double cached)
        {
            _nextDoubleNormal = null;
            return cached;
        }
        double u1 = NextUniformDouble();
        double u2 = NextUniformDouble();
        double r = Math.Sqrt(-2.0 * LogOnePlus(-u2));
        double theta = 2.0 * Math.PI * u1;
        _nextDoubleNormal = r * Math.Sin(theta);
        return r * Math.Cos(theta);
    }

    // log1p without cancellation for small |x| (System.Math has no log1p).
    private static double LogOnePlus(double x)
    {
        double u = 1.0 + x;
        return u == 1.0 ? x : Math.Log(u) * x / (u - 1.0);
    }
}
