using System.Numerics.Tensors;

namespace RenderFarm.Diffusion.Schedulers;

/// <summary>
/// One scheduler step as a linear map, for the schedulers whose steps are (<see cref="ILinearScheduler"/>). With x the
/// sample, ε̂ the (guided) model output, x̃ the previous step's <c>d</c> and z fresh noise:
/// <code>
/// x₀ = clip(P·x + Q·ε̂, ±ClipRange)     the model's estimate of the clean sample
/// d  = M·x₀ + K·x                      what the step reports as x₀ (PredOriginal) and keeps for the next step
/// x' = A·x + B·d + C·x̃ + E·ε̂ + D·z
/// </code>
/// The same coefficients drive the host step (<see cref="Apply"/>) and the graph that steps on the models' device,
/// so each scheduler's maths is written once.
/// </summary>
public readonly record struct LinearStep
{
    /// <summary>P: x₀ from the sample.</summary>
    public float OriginalFromSample { get; init; }

    /// <summary>Q: x₀ from the model output.</summary>
    public float OriginalFromOutput { get; init; }

    /// <summary>x₀ is clamped to ±this (clip_sample); +∞ when not clipped.</summary>
    public float ClipRange { get; init; }

    /// <summary>M: d from x₀ (1 unless a boundary condition mixes in the sample, as LCM's).</summary>
    public float ReportedFromOriginal { get; init; }

    /// <summary>K: d from the sample.</summary>
    public float ReportedFromSample { get; init; }

    /// <summary>A: x' from the sample.</summary>
    public float NextFromSample { get; init; }

    /// <summary>B: x' from d.</summary>
    public float NextFromReported { get; init; }

    /// <summary>C: x' from the previous step's d (multistep solvers; 0 otherwise).</summary>
    public float NextFromPrevious { get; init; }

    /// <summary>E: x' from the model output.</summary>
    public float NextFromOutput { get; init; }

    /// <summary>D: x' from fresh noise.</summary>
    public float NextFromNoise { get; init; }

    /// <summary>Whether the step draws fresh noise (it may draw with D = 0: the streams advance as diffusers' do).</summary>
    public bool DrawsNoise { get; init; }

    /// <summary>The optional terms this step has (each one the host applies, and a step graph's nodes).</summary>
    internal StepTerms Terms =>
        (float.IsFinite(ClipRange) ? StepTerms.Clip : 0)
        | (ReportedFromOriginal != 1f || ReportedFromSample != 0f ? StepTerms.Mix : 0)
        | (NextFromPrevious != 0f ? StepTerms.Previous : 0)
        | (NextFromOutput != 0f ? StepTerms.Output : 0)
        | (NextFromNoise != 0f ? StepTerms.Noise : 0);

    /// <summary>x₀ = P·x + Q·ε̂ unclipped, d = x₀; the callers fill in x'.</summary>
    public static LinearStep Predicting((float Sample, float Output) original) => new()
    {
        OriginalFromSample = original.Sample,
        OriginalFromOutput = original.Output,
        ClipRange = float.PositiveInfinity,
        ReportedFromOriginal = 1f,
    };

    /// <summary>
    /// The step on the host: <paramref name="reported"/> gets d, <paramref name="next"/> x'. <paramref name="sample"/>
    /// may alias <paramref name="next"/>; <paramref name="previous"/> and <paramref name="noise"/> are read only
    /// when the step has their <see cref="Terms"/>.
    /// </summary>
    public void Apply(ReadOnlySpan<float> output, ReadOnlySpan<float> sample, ReadOnlySpan<float> previous, ReadOnlySpan<float> noise,
        Span<float> reported, Span<float> next)
    {
        int n = next.Length;
        var terms = Terms;
        ScheduleMath.Combine(sample[..n], OriginalFromSample, output[..n], OriginalFromOutput, reported[..n]);
        if (terms.HasFlag(StepTerms.Clip))
        {
            TensorPrimitives.Clamp(reported[..n], -ClipRange, ClipRange, reported[..n]);
        }
        if (terms.HasFlag(StepTerms.Mix))
        {
            ScheduleMath.Combine(reported[..n], ReportedFromOriginal, sample[..n], ReportedFromSample, reported[..n]);
        }
        // x' is written last: the sample may be the same buffer.
        ScheduleMath.Combine(sample[..n], NextFromSample, reported[..n], NextFromReported, next);
        if (terms.HasFlag(StepTerms.Previous))
        {
            TensorPrimitives.MultiplyAdd(previous[..n], NextFromPrevious, next, next);
        }
        if (terms.HasFlag(StepTerms.Output))
        {
            TensorPrimitives.MultiplyAdd(output[..n], NextFromOutput, next, next);
        }
        if (terms.HasFlag(StepTerms.Noise))
        {
            TensorPrimitives.MultiplyAdd(noise[..n], NextFromNoise, next, next);
        }
    }
}

/// <summary>
/// A scheduler whose every step is a <see cref="LinearStep"/>: the pipeline can then run guidance and the step on the
/// models' device and keep the latents there (<see cref="DiffusionOptions.StepOnDevice"/>).
/// </summary>
public interface ILinearScheduler
{
    /// <summary>
    /// The map of step <paramref name="stepIndex"/>. Like <see cref="Scheduler.Step"/> it advances multistep state, so
    /// call it once per step, in order, and instead of Step.
    /// </summary>
    LinearStep NextStep(int stepIndex);
}

/// <summary>
/// The host side of an <see cref="ILinearScheduler"/>'s <see cref="Scheduler.Step"/>: draws the step's noise, keeps
/// the last d for multistep solvers and applies the map.
/// </summary>
internal sealed class HostLinearSteps(string scheduler)
{
    private float[] _noise = [];
    private float[] _previous = [];

    public void Step(LinearStep step, ReadOnlySpan<float> modelOutput, ReadOnlySpan<float> sample, SchedulerStepResult into, IStepNoise? noise, bool keepReported)
    {
        int n = sample.Length;
        if (step.DrawsNoise)
        {
            if (_noise.Length != n) _noise = new float[n];
            Scheduler.RequireNoise(noise, scheduler).Fill(_noise);
        }
        if (step.Terms.HasFlag(StepTerms.Previous) && _previous.Length != n)
        {
            throw new InvalidOperationException($"The {scheduler} scheduler's previous step was on {_previous.Length} values, this one on {n}; call SetTimesteps first.");
        }
        step.Apply(modelOutput, sample, _previous, _noise, into.PredOriginal, into.PrevSample.AsSpan(0, n));
        if (keepReported)
        {
            if (_previous.Length != n) _previous = new float[n];
            into.PredOriginal.AsSpan(0, n).CopyTo(_previous);
        }
    }
}
