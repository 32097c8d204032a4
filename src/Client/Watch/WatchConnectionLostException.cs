namespace RenderFarm.Client.Watch;

/// <summary>The event stream was lost and did not come back within the policy's patience.</summary>
public sealed class WatchConnectionLostException(string message, Exception? inner) : Exception(message, inner);
