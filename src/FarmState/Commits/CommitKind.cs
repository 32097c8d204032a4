namespace RenderFarm.FarmState.Commits;

/// <summary>What an open commit (<see cref="OpenCommit"/>) is making visible, which says how a cut-short one is settled.</summary>
public enum CommitKind
{
    /// <summary>A new job: its meta, then its staged shards published. Nobody has its id until it is complete.</summary>
    Submission,

    /// <summary>A failed job re-opened for its failed images, then the retry's staged shards published.</summary>
    Retry,

    /// <summary>A paused job resumed, its parked shards moved to a staged list, then published.</summary>
    Resume,
}
