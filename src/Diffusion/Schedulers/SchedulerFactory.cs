using RenderFarm.GenerationRules;

namespace RenderFarm.Diffusion.Schedulers;

/// <summary>
/// Scheduler names accepted in requests (<see cref="SchedulerNames"/>, the farm's list), and the scheduler each one
/// builds from the model's config.
/// </summary>
public static class SchedulerFactory
{
    private static readonly Dictionary<string, Func<SchedulerConfig, Scheduler>> Factories = new(StringComparer.OrdinalIgnoreCase)
    {
        [SchedulerNames.Euler] = c => new EulerDiscreteScheduler(c with { UseKarrasSigmas = false }),
        [SchedulerNames.EulerKarras] = c => new EulerDiscreteScheduler(c with { UseKarrasSigmas = true }),
        [SchedulerNames.EulerAncestral] = c => new EulerAncestralDiscreteScheduler(c with { UseKarrasSigmas = false }),
        [SchedulerNames.Ddim] = c => new DdimScheduler(c),
        [SchedulerNames.DpmSolver2M] = c => new DpmSolverMultistepScheduler(c with { UseKarrasSigmas = false }),
        [SchedulerNames.DpmSolver2MKarras] = c => new DpmSolverMultistepScheduler(c with { UseKarrasSigmas = true }),
        [SchedulerNames.Lms] = c => new LmsDiscreteScheduler(c with { UseKarrasSigmas = false }),
        [SchedulerNames.LmsKarras] = c => new LmsDiscreteScheduler(c with { UseKarrasSigmas = true }),
        [SchedulerNames.Pndm] = c => new PndmScheduler(c with { SkipPrkSteps = true }),
        [SchedulerNames.Lcm] = c => new LcmScheduler(c),
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
