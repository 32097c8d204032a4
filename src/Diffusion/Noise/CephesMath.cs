namespace RenderFarm.Diffusion.Noise;

/// <summary>
/// The float32 log and sincos of PyTorch's <c>aten/src/ATen/native/cpu/avx_mathfun.h</c> (Julien Pommier's
/// cephes-based <c>log256_ps</c> and <c>sincos256_ps</c>), lane by lane, in the exact operation order of the AVX2
/// code as GCC compiles it: each multiply whose only use is an add or subtract is fused into one FMA (GCC contracts
/// the intrinsics' plain vector arithmetic), everything else rounds after every operation. That fusion is not a
/// guess left open: the unfused order differs from published <c>torch.randn</c> values where this one matches them
/// all (see <see cref="TorchRandn"/>). Arguments are what the normal sampler passes: log of (0, 1], sincos of [0, 2π).
/// </summary>
internal static class CephesMath
{
    private const float Sqrt1Half = 0.707106781186547524f;
    private const float FourOverPi = 1.27323954473516f;

    /// <summary><c>log256_ps</c> for a positive normal <paramref name="x"/>.</summary>
    public static float Log(float x)
    {
        int bits = BitConverter.SingleToInt32Bits(MathF.Max(x, 1.17549435e-38f)); // cut off denormals
        float e = (bits >>> 23) - 0x7f;
        e += 1f;
        // keep the mantissa, exponent of 0.5: x in [0.5, 1)
        x = BitConverter.Int32BitsToSingle((bits & ~0x7f800000) | 0x3f000000);
        bool small = x < Sqrt1Half;
        float tmp = small ? x : 0f;
        x -= 1f;
        e -= small ? 1f : 0f;
        x += tmp;

        float z = x * x;
        float y = 7.0376836292E-2f;
        y = MathF.FusedMultiplyAdd(y, x, -1.1514610310E-1f);
        y = MathF.FusedMultiplyAdd(y, x, 1.1676998740E-1f);
        y = MathF.FusedMultiplyAdd(y, x, -1.2420140846E-1f);
        y = MathF.FusedMultiplyAdd(y, x, 1.4249322787E-1f);
        y = MathF.FusedMultiplyAdd(y, x, -1.6668057665E-1f);
        y = MathF.FusedMultiplyAdd(y, x, 2.0000714765E-1f);
        y = MathF.FusedMultiplyAdd(y, x, -2.4999993993E-1f);
        y = MathF.FusedMultiplyAdd(y, x, 3.3333331174E-1f);
        y *= x;
        y *= z;
        y = MathF.FusedMultiplyAdd(e, -2.12194440e-4f, y);
        y = MathF.FusedMultiplyAdd(-z, 0.5f, y);
        x += y;
        return MathF.FusedMultiplyAdd(e, 0.693359375f, x);
    }

    /// <summary><c>sincos256_ps</c> for a finite <paramref name="value"/> (|value| below 2³¹·π/4).</summary>
    public static void SinCos(float value, out float sin, out float cos)
    {
        float x = MathF.Abs(value);
        uint signSin = BitConverter.SingleToUInt32Bits(value) & 0x80000000u;

        int j = (int)(x * FourOverPi); // truncation, as cvttps
        j = (j + 1) & ~1;
        float y = j;
        uint swapSin = (uint)(j & 4) << 29;
        bool firstPolynomial = (j & 2) == 0;
        uint signCos = (uint)(~(j - 2) & 4) << 29;
        signSin ^= swapSin;

        // extended precision modular arithmetic: x = ((x − y·DP1) − y·DP2) − y·DP3
        x = MathF.FusedMultiplyAdd(y, -0.78515625f, x);
        x = MathF.FusedMultiplyAdd(y, -2.4187564849853515625e-4f, x);
        x = MathF.FusedMultiplyAdd(y, -3.77489497744594108e-8f, x);

        float z = x * x;
        float c = 2.443315711809948E-005f;
        c = MathF.FusedMultiplyAdd(c, z, -1.388731625493765E-003f);
        c = MathF.FusedMultiplyAdd(c, z, 4.166664568298827E-002f);
        c *= z;
        c = MathF.FusedMultiplyAdd(c, z, -(z * 0.5f));
        c += 1f;

        float s = -1.9515295891E-4f;
        s = MathF.FusedMultiplyAdd(s, z, 8.3321608736E-3f);
        s = MathF.FusedMultiplyAdd(s, z, -1.6666654611E-1f);
        s *= z;
        s = MathF.FusedMultiplyAdd(s, x, x);

        // select per polynomial exactly as the masked adds/subtracts do
        float sinFromS = firstPolynomial ? s : 0f;
        float sinFromC = firstPolynomial ? 0f : c;
        s -= sinFromS;
        c -= sinFromC;
        sin = BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(sinFromC + sinFromS) ^ signSin);
        cos = BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(c + s) ^ signCos);
    }
}
