namespace RenderFarm.Diffusion.Schedulers;

/// <summary>Scheduler names accepted in requests, and the scheduler each one builds from the model's config.</summary>
public static class SchedulerFactory
{
    private static readonly Dictionary<string, Func<SchedulerConfig, Scheduler>> Factories = new(StringComparer.OrdinalIgnoreCase)
    {
        ["euler"] = c => new EulerDiscreteScheduler(c with { UseKarrasSigmas = false }),
        ["euler_karras"] = c => new EulerDiscreteScheduler(c with { UseKarrasSigmas = true }),
        ["euler_a"] = c => new EulerAncestralDiscreteScheduler(c with { UseKarrasSigmas = false }),
        ["ddim"] = c => new DdimScheduler(c),
        ["dpmpp_2m"] = c => new DpmSolverMultistepScheduler(c with { UseKarrasSigmas = false }),
        ["dpmpp_2m_karras"] = c => new DpmSolverMultistepScheduler(c with { UseKarrasSigmas = true }),
        ["lms"] = c => new LmsDiscreteScheduler(c with { UseKarrasSigmas = false }),
        ["lms_karras"] = c => new LmsDiscreteScheduler(c with { UseKarrasSigmas = true }),
        ["pndm"] = c => new PndmScheduler(c with { SkipPrkSteps = true }),
        ["lcm"] = c => new LcmScheduler(c),
    };

    /// <summary>Every accepted name, lower case.</summary>
    public static IReadOnlyList<string> Names => Factories.Keys.Order(StringComparer.Ordinal).ToArray();

    public static bool IsKnown(string? name) => name is not null && Factories.ContainsKey(name);

    /// <summary>Builds the scheduler called <paramref name="name"/> over <paramref name="config"/>.</summary>
    /// <exception cref="ArgumentException">Unknown name (the message lists the valid ones).</exception>
    public static Scheduler Create(string name, SchedulerConfig config)
    {
        if (name is null || !Factories.TryGetValue(name, out var factory))
        {
            throw new ArgumentException($"Unknown scheduler '{name}'; valid values are {string.Join(", ", Names)}.", nameof(name));
        }
        return factory(config);
    }
}
