namespace RenderFarm.Diffusion.Schedulers;

/// <summary>
/// The training noise schedule: βₜ, αₜ = 1 − βₜ and ᾱₜ = ∏ αₛ. Values are rounded to float32 as diffusers computes
/// them (torch float32 linspace; cumprod accumulated in double and stored as float32), kept as doubles. Immutable;
/// <see cref="From"/> computes each distinct schedule once per process (every request builds a scheduler).
/// </summary>
public sealed class NoiseSchedule
{
    private const int MaxCached = 64;
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<Key, NoiseSchedule> Cache = new();
    private readonly Lazy<IReadOnlyList<double>> _trainSigmas;

    private NoiseSchedule(double[] betas, double[] alphasCumprod)
    {
        Betas = Array.AsReadOnly(betas);
        AlphasCumprod = Array.AsReadOnly(alphasCumprod);
        _trainSigmas = new(ComputeTrainSigmas);
    }

    // TrainedBetas compares by reference: a config loaded once shares its schedule; another list is computed anew.
    private readonly record struct Key(int Count, double BetaStart, double BetaEnd, string BetaSchedule, IReadOnlyList<double>? TrainedBetas);

    public IReadOnlyList<double> Betas { get; }

    /// <summary>ᾱₜ for t = 0 … num_train_timesteps − 1.</summary>
    public IReadOnlyList<double> AlphasCumprod { get; }

    public int Count => AlphasCumprod.Count;

    public static NoiseSchedule From(SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var key = new Key(config.NumTrainTimesteps, config.BetaStart, config.BetaEnd, config.BetaSchedule, config.TrainedBetas);
        if (Cache.TryGetValue(key, out var cached))
        {
            return cached;
        }
        var schedule = Compute(config);
        if (Cache.Count >= MaxCached)
        {
            Cache.Clear();
        }
        return Cache.GetOrAdd(key, schedule);
    }

    private static NoiseSchedule Compute(SchedulerConfig config)
    {
        int n = config.NumTrainTimesteps;
        double[] betas;
        if (config.TrainedBetas is { } trained)
        {
            betas = trained.Select(b => (double)(float)b).ToArray();
        }
        else
        {
            betas = config.BetaSchedule switch
            {
                "linear" => TorchLinspaceFloat32(config.BetaStart, config.BetaEnd, n),
                "scaled_linear" => TorchLinspaceFloat32(Math.Sqrt(config.BetaStart), Math.Sqrt(config.BetaEnd), n)
                    .Select(b => (double)((float)b * (float)b)).ToArray(),
                _ => throw new NotSupportedException(
                    $"Unknown beta_schedule '{config.BetaSchedule}'; valid values are {string.Join(", ", SchedulerConfig.ValidBetaSchedules)}."),
            };
        }
        var alphasCumprod = new double[n];
        double product = 1.0;
        for (int t = 0; t < n; t++)
        {
            product *= (float)(1f - (float)betas[t]);
            alphasCumprod[t] = (float)product;
        }
        return new NoiseSchedule(betas, alphasCumprod);
    }

    /// <summary>σₜ = √((1 − ᾱₜ)/ᾱₜ) for every training timestep, rounded to float32 (the Karras/Euler σ table).</summary>
    public IReadOnlyList<double> TrainSigmas() => _trainSigmas.Value;

    private IReadOnlyList<double> ComputeTrainSigmas()
    {
        var sigmas = new double[Count];
        for (int t = 0; t < sigmas.Length; t++)
        {
            float ac = (float)AlphasCumprod[t];
            sigmas[t] = MathF.Sqrt((1f - ac) / ac);
        }
        return Array.AsReadOnly(sigmas);
    }

    // torch.linspace(start, end, steps, dtype=float32): step in float32, the first half counted from the start and the
    // second half back from the end.
    private static double[] TorchLinspaceFloat32(double start, double end, int steps)
    {
        float s = (float)start, e = (float)end;
        var result = new double[steps];
        if (steps == 1)
        {
            result[0] = s;
            return result;
        }
        float step = (e - s) / (steps - 1);
        int halfway = steps / 2;
        for (int i = 0; i < steps; i++)
        {
            result[i] = i < halfway ? s + step * i : e - step * (steps - i - 1);
        }
        return result;
    }
}
