using System.Globalization;
using RenderFarm.Client.Cli;
using RenderFarm.Client.Prompts;

namespace RenderFarm.Client.Submit;

/// <summary>
/// The seeds every prompt of a batch is rendered with (unless a prompt brings its own):
/// <c>--seeds 1,2,3</c> → exactly those; <c>--seed S --seed-count N</c> → S..S+N-1; <c>--seed S</c> → [S];
/// <c>--seed-count N</c> alone → N consecutive seeds from a random start; nothing → one random seed. Random seeds are
/// chosen here, not by the coordinator, so the client can print them and a user can reproduce the batch.
/// </summary>
public sealed class SeedPlan
{
    /// <summary>Upper bound on seeds per prompt (keeps the job header far below gRPC's message-size limit).</summary>
    public const int MaxSeeds = 10_000;

    private SeedPlan(IReadOnlyList<long> seeds, bool isRandom)
    {
        Seeds = seeds;
        IsRandom = isRandom;
    }

    public IReadOnlyList<long> Seeds { get; }

    /// <summary>True when the client picked the start seed itself (print it so the batch can be reproduced).</summary>
    public bool IsRandom { get; }

    /// <summary>Builds the plan from the command-line options; conflicting or out-of-range values are usage errors.</summary>
    public static SeedPlan Create(long? seed, IReadOnlyList<long>? seeds, int? seedCount, Func<long> randomSeed)
    {
        if (seeds is not null)
        {
            if (seed is not null)
            {
                throw new CliUsageException("error: give either --seed or --seeds, not both");
            }

            if (seedCount is not null)
            {
                throw new CliUsageException("error: --seed-count goes with --seed, not with --seeds (the list already fixes the count)");
            }

            if (seeds.Count == 0)
            {
                throw new CliUsageException("error: --seeds is empty");
            }

            if (seeds.Count > MaxSeeds)
            {
                throw new CliUsageException($"error: --seeds lists {seeds.Count} seeds; at most {MaxSeeds} are allowed");
            }

            return new SeedPlan(seeds.ToArray(), isRandom: false);
        }

        var count = seedCount ?? 1;
        if (count < 1 || count > MaxSeeds)
        {
            throw new CliUsageException($"error: --seed-count must be between 1 and {MaxSeeds}, got {count}");
        }

        var isRandom = seed is null;
        var start = seed ?? randomSeed();
        if (start < 0)
        {
            throw new CliUsageException($"error: --seed must be a non-negative integer, got {start}");
        }

        if (start > long.MaxValue - (count - 1))
        {
            throw new CliUsageException($"error: --seed {start} with --seed-count {count} runs past the largest seed");
        }

        var list = new long[count];
        for (var i = 0; i < count; i++)
        {
            list[i] = start + i;
        }

        return new SeedPlan(list, isRandom);
    }

    /// <summary>A random seed in the 32-bit range every Stable Diffusion tool accepts.</summary>
    public static long NewRandomSeed() => Random.Shared.NextInt64(0, 1L + uint.MaxValue);

    /// <summary>Parses <c>1,2,3</c> (spaces allowed) into seeds; a bad item is a usage error that names it.</summary>
    public static IReadOnlyList<long> ParseList(string text)
    {
        var seeds = new List<long>();
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries))
        {
            if (!long.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var seed))
            {
                throw new FormatException(part.Length == 0
                    ? $"'{text}' has an empty item; write seeds as 1,2,3"
                    : $"'{part}' is not a non-negative integer seed");
            }

            seeds.Add(seed);
        }

        return seeds;
    }

    /// <summary>Images one prompt yields: its seeds (its own when it overrides them) × images per seed.</summary>
    public long ImagesFor(PromptEntry entry, uint imagesPerPrompt) =>
        (long)(entry.Seeds?.Count ?? Seeds.Count) * Math.Max(1u, imagesPerPrompt);

    /// <summary>Short description: "42", "1, 2, 3" or "42..51 (10 seeds)".</summary>
    public string Describe()
    {
        if (Seeds.Count == 1)
        {
            return Seeds[0].ToString(CultureInfo.InvariantCulture);
        }

        var consecutive = true;
        for (var i = 1; i < Seeds.Count && consecutive; i++)
        {
            consecutive = Seeds[i] == Seeds[i - 1] + 1;
        }

        if (consecutive && Seeds.Count > 3)
        {
            return string.Create(CultureInfo.InvariantCulture, $"{Seeds[0]}..{Seeds[^1]} ({Seeds.Count} seeds)");
        }

        return Seeds.Count <= 8
            ? string.Join(", ", Seeds)
            : string.Join(", ", Seeds.Take(8)) + $", … ({Seeds.Count} seeds)";
    }
}
