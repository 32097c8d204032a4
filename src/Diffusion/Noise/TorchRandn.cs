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
/// <item>numel ≥ 16 (contiguous float32, the <c>normal_fill_AVX2</c> path): first fill every element with a uniform
/// float, then for each complete block of 16 apply Box–Muller pairwise: for j in 0..7, u1 = 1 − d[j], u2 = d[j+8],
/// r = sqrt(−2·log u1), θ = 2π·u2 (float32), d[j] = r·cos θ, d[j+8] = r·sin θ. When numel % 16 ≠ 0 the last 16
/// elements are redrawn as fresh uniforms (16 more words) and transformed again as one block, overwriting the
/// overlap with the previous block. log, sin and cos are <see cref="CephesMath"/>: torch's avx_mathfun.h
/// (<c>log256_ps</c>, <c>sincos256_ps</c>) with the operation order and the fused multiply-adds GCC gives them.</item>
/// <item>numel &lt; 16 (the serial <c>normal_distribution&lt;double&gt;</c> path): each element takes the cached second
/// value of the previous pair if there is one; otherwise draws u1, u2 as uniform doubles, r = sqrt(−2·log1p(−u2)),
/// θ = 2π·u1, returns r·cos θ and caches r·sin θ. The cache lives in the generator and is cleared by seeding.</item>
/// </list>
/// What holds: the float32 path is bit-identical to PyTorch's AVX2 CPU kernel — every one of 248 published
/// <c>torch.randn</c> values (seed 0, two independent sources, both the aligned and the tail-recomputed blocks) is
/// reproduced exactly, where libm's log/sin/cos matched only ~64 % of them (and a plain, unfused evaluation of the
/// same polynomials 247). PyTorch builds that run another kernel (the scalar <c>normal_fill</c> with libm, e.g. on
/// ARM) differ from it, and so from us, in the last bit or two of about a third of the values. The double path
/// (fewer than 16 values; never a latent) is computed in double and rounded to float32, which hides any last-bit
/// difference between .NET's and glibc's double functions.
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

    /// <summary>torch's <c>normal_fill_16_AVX2</c>, one lane at a time (lanes are independent).</summary>
    private static void BoxMuller16(Span<float> block)
    {
        const float TwoPi = (float)(2.0 * Math.PI);
        for (int j = 0; j < 8; j++)
        {
            float u1 = 1f - block[j];
            float u2 = block[j + 8];
            float radius = MathF.Sqrt(-2f * CephesMath.Log(u1));
            CephesMath.SinCos(TwoPi * u2, out float sin, out float cos);
            // torch stores fmadd(n, std, mean); with std 1 and mean 0 that is n, but the fma keeps −0 → +0 as torch does.
            block[j] = MathF.FusedMultiplyAdd(radius * cos, 1f, 0f);
            block[j + 8] = MathF.FusedMultiplyAdd(radius * sin, 1f, 0f);
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
