namespace RenderFarm.Shared;

/// <summary>Scheduler names the farm accepts (the pipeline's registry must serve each of them).</summary>
public static class SchedulerNames
{
    public const string Default = "euler";

    public static readonly IReadOnlyList<string> All =
        ["euler", "euler_karras", "euler_a", "ddim", "dpmpp_2m", "dpmpp_2m_karras", "lms", "lms_karras", "pndm", "lcm"];

    public static bool IsKnown(string name) => All.Contains(name);
}
