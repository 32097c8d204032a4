namespace RenderFarm.GenerationRules;

/// <summary>
/// The schedulers the farm accepts, by the name requests use (lower case). The pipeline's scheduler registry builds
/// each of them and no other (a contract test checks it); the CLI and the coordinator refuse any other name.
/// </summary>
public static class SchedulerNames
{
    public const string Euler = "euler";
    public const string EulerKarras = "euler_karras";
    public const string EulerAncestral = "euler_a";
    public const string Ddim = "ddim";
    public const string DpmSolver2M = "dpmpp_2m";
    public const string DpmSolver2MKarras = "dpmpp_2m_karras";
    public const string Lms = "lms";
    public const string LmsKarras = "lms_karras";
    public const string Pndm = "pndm";
    public const string Lcm = "lcm";

    /// <summary>What a request that names none renders with.</summary>
    public const string Default = Euler;

    public static readonly IReadOnlyList<string> All =
        [Euler, EulerKarras, EulerAncestral, Ddim, DpmSolver2M, DpmSolver2MKarras, Lms, LmsKarras, Pndm, Lcm];

    /// <summary>Whether <paramref name="name"/> is one of <see cref="All"/>, exactly (lower case).</summary>
    public static bool IsKnown(string name) => All.Contains(name);
}
