namespace RenderFarm.FarmState.TaskStreams;

/// <summary>What becomes of a shard a worker has just claimed, decided by its job's state (<see cref="ShardQueue.AdmitAsync"/>).</summary>
public enum ShardAdmission
{
    /// <summary>The job is queued or running: render it.</summary>
    Run,

    /// <summary>The job is paused: the shard is parked with the job until it is resumed, and acknowledged here.</summary>
    Parked,

    /// <summary>The job ended (cancelled, completed or failed) or was deleted: the shard is dropped (acknowledged).</summary>
    Ended,
}
