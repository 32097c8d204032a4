using RenderFarm.Protocol;

namespace RenderFarm.Shared;

/// <summary>A failure kind as metrics label it: out_of_memory, device, input, bug, unspecified (coordinator and worker alike).</summary>
public static class FailureKindLabel
{
    public static string Of(FailureKind kind) => kind switch
    {
        FailureKind.OutOfMemory => "out_of_memory",
        FailureKind.Device => "device",
        FailureKind.Input => "input",
        FailureKind.Bug => "bug",
        _ => "unspecified",
    };
}
