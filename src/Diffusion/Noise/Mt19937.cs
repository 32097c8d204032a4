namespace RenderFarm.Diffusion.Noise;

/// <summary>
/// The 32-bit Mersenne Twister exactly as PyTorch's CPU generator runs it (at::mt19937): the state is seeded
/// from the low 32 bits of the 64-bit seed with the reference recurrence
/// state[j] = 1812433253 · (state[j−1] ⊕ (state[j−1] ≫ 30)) + j, and outputs the standard tempered words.
/// </summary>
internal sealed class Mt19937
{
    private const int N = 624;
    private const int M = 397;
    private const uint MatrixA = 0x9908b0df;
    private const uint UpperMask = 0x80000000;
    private const uint LowerMask = 0x7fffffff;

    private readonly uint[] _state = new uint[N];
    private int _next;

    public Mt19937(ulong seed)
    {
        _state[0] = (uint)(seed & 0xffffffff);
        for (uint j = 1; j < N; j++)
        {
            _state[j] = unchecked(1812433253u * (_state[j - 1] ^ (_state[j - 1] >> 30)) + j);
        }
        _next = N; // the first draw regenerates the block, like the reference's left = 1
    }

    /// <summary>The next 32 random bits.</summary>
    public uint NextUInt32()
    {
        if (_next >= N)
        {
            Twist();
        }
        uint y = _state[_next++];
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c5680;
        y ^= (y << 15) & 0xefc60000;
        y ^= y >> 18;
        return y;
    }

    /// <summary>PyTorch's random64(): the first 32-bit word is the high half.</summary>
    public ulong NextUInt64()
    {
        ulong hi = NextUInt32();
        ulong lo = NextUInt32();
        return (hi << 32) | lo;
    }

    private void Twist()
    {
        var s = _state;
        int k = 0;
        for (; k < N - M; k++)
        {
            uint y = (s[k] & UpperMask) | (s[k + 1] & LowerMask);
            s[k] = s[k + M] ^ (y >> 1) ^ ((s[k + 1] & 1) != 0 ? MatrixA : 0u);
        }
        for (; k < N - 1; k++)
        {
            uint y = (s[k] & UpperMask) | (s[k + 1] & LowerMask);
            s[k] = s[k + (M - N)] ^ (y >> 1) ^ ((s[k + 1] & 1) != 0 ? MatrixA : 0u);
        }
        uint last = (s[N - 1] & UpperMask) | (s[0] & LowerMask);
        s[N - 1] = s[M - 1] ^ (last >> 1) ^ ((s[0] & 1) != 0 ? MatrixA : 0u);
        _next = 0;
    }
}
