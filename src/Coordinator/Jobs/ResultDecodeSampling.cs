using Microsoft.Extensions.Options;
using RenderFarm.Coordinator.Workers;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>
/// Which results are decoded in full. Inflating a 512² PNG is ~3 ms of CPU, half of what a result costs the
/// coordinator, and it guards against little: a worker that means harm can send a well-formed PNG of noise, which no
/// check refuses. What it finds is a worker whose encoder writes broken deflate data, and that shows at once and
/// again. So each connection's first results are all decoded, then one in N at random (a worker cannot tell which),
/// and all of them after any result of the connection was refused. Every result still has its structure checked:
/// chunks, CRCs, its header's size and layout, the zlib stream's header (<see cref="ResultCheck"/>).
/// </summary>
public sealed class ResultDecodeSampling(IOptions<CoordinatorOptions> options)
{
    /// <summary>Whether each of the next <paramref name="count"/> results of <paramref name="session"/> is decoded in full; counts them.</summary>
    public bool[] Pick(WorkerSession session, int count)
    {
        var o = options.Value;
        var picks = new bool[count];
        for (var i = 0; i < count; i++)
        {
            picks[i] = Decodes(session.ResultsDecoded, session.SentBadResult, o.ResultDecodeFirst, o.ResultDecodeOneIn, Random.Shared);
            if (picks[i]) session.ResultsDecoded++;
        }
        return picks;
    }

    /// <summary>The rule: the first <paramref name="first"/> decoded, then one in <paramref name="oneIn"/> at random, all after a refusal.</summary>
    public static bool Decodes(long decodedSoFar, bool sentBadResult, int first, int oneIn, Random random) =>
        sentBadResult || oneIn <= 1 || decodedSoFar < first || random.Next(oneIn) == 0;
}
