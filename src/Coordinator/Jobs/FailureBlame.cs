namespace RenderFarm.Coordinator.Jobs;

/// <summary>Whose fault a failed attempt is, and so what follows from it.</summary>
public enum FailureBlame
{
    /// <summary>The worker's (a device fault or a bug, as far as anyone knows yet): it counts towards its quarantine.</summary>
    Worker,

    /// <summary>The input's (an undecodable image, a size the model or device cannot render): retried, never counted.</summary>
    Input,

    /// <summary>
    /// The shard's: another worker failed it the same way. It is not retried, nothing is held against either worker, and
    /// what was held against the others for it is taken back.
    /// </summary>
    Shard,
}
