using System.Numerics.Tensors;

namespace RenderFarm.Diffusion.Schedulers;

/// <summary>
/// One scheduler step as a linear map (<see cref="Scheduler.NextStep"/>: every scheduler's steps are). With x the
/// sample, ε̂ the (guided) model output, x̃₁ … x̃₃ the <c>d</c> of the last three steps and z fresh noise:
/// <code>
/// x₀ = clip(P·x + Q·ε̂, ±ClipRange)     the model's estimate of the clean sample
/// d  = M·x₀ + K·x                      what the step reports (PredOriginal, unless the scheduler reports x₀) and keeps
/// x' = A·x + B·d + C₁·x̃₁ + C₂·x̃₂ + C₃·x̃₃ + E·ε̂ + D·z
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

    /// <summary>C₁: x' from the previous step's d (multistep solvers; 0 otherwise).</summary>
    public float NextFromPrevious { get; init; }

    /// <summary>C₂: x' from the d of two steps back (LMS; 0 otherwise).</summary>
    public float NextFromSecondPrevious { get; init; }

    /// <summary>C₃: x' from the d of three steps back (LMS; 0 otherwise).</summary>
    public float NextFromThirdPrevious { get; init; }

    /// <summary>E: x' from the model output.</summary>
    public float NextFromOutput { get; init; }

    /// <summary>D: x' from fresh noise.</summary>
    public float NextFromNoise { get; init; }

    /// <summary>Whether the step draws fresh noise (it may draw with D = 0: the streams advance as diffusers' do).</summary>
    public bool DrawsNoise { get; init; }

    /// <summary>
    /// Whether this step's d is left out of the earlier steps' the next steps read (PNDM's redone first step): their
    /// x̃₁ is then the d of the step before this one.
    /// </summary>
    public bool SkipsHistory { get; init; }

    /// <summary>The optional terms this step has (each one the host applies, and a step graph's nodes).</summary>
    internal StepTerms Terms =>
        (float.IsFinite(ClipRange) ? StepTerms.Clip : 0)
        | (ReportedFromOriginal != 1f || ReportedFromSample != 0f ? StepTerms.Mix : 0)
        | (NextFromPrevious != 0f ? StepTerms.Previous : 0)
        | (NextFromSecondPrevious != 0f ? StepTerms.SecondPrevious : 0)
        | (NextFromThirdPrevious != 0f ? StepTerms.ThirdPrevious : 0)
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

    /// <summary>How many earlier steps' d this step reads (0 to 3).</summary>
    internal int HistoryDepth => NextFromThirdPrevious != 0f ? 3 : NextFromSecondPrevious != 0f ? 2 : NextFromPrevious != 0f ? 1 : 0;

    /// <summary>
    /// The step on the host: <paramref name="reported"/> gets d, <paramref name="next"/> x'. <paramref name="sample"/>
    /// may alias <paramref name="next"/>; <paramref name="history"/> (the earlier steps' d, the last first) and
    /// <paramref name="noise"/> are read only when the step has their <see cref="Terms"/>.
    /// </summary>
    public void Apply(ReadOnlySpan<float> output, ReadOnlySpan<float> sample, IReadOnlyList<float[]> history, ReadOnlySpan<float> noise,
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
            TensorPrimitives.MultiplyAdd(history[0].AsSpan(0, n), NextFromPrevious, next, next);
        }
        if (terms.HasFlag(StepTerms.SecondPrevious))
        {
            TensorPrimitives.MultiplyAdd(history[1].AsSpan(0, n), NextFromSecondPrevious, next, next);
        }
        if (terms.HasFlag(StepTerms.ThirdPrevious))
        {
            TensorPrimitives.MultiplyAdd(history[2].AsSpan(0, n), NextFromThirdPrevious, next, next);
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
/// The host side of a scheduler's <see cref="Scheduler.Step"/>: draws the step's noise, keeps
/// the last steps' d for multistep solvers and applies the map.
/// </summary>
internal sealed class HostLinearSteps(string scheduler)
{
    private const int Kept = 3;
    private float[] _noise = [];
    private readonly List<float[]> _history = []; // the last steps' d, the last first

    /// <summary>The step, d reported as <paramref name="into"/>'s PredOriginal.</summary>
    public void Step(LinearStep step, ReadOnlySpan<float> modelOutput, ReadOnlySpan<float> sample, SchedulerStepResult into, IStepNoise? noise, bool keepReported) =>
        Step(step, modelOutput, sample, into.PredOriginal, into.PrevSample, noise, keepReported);

    /// <summary>The step, d written to <paramref name="reported"/> and x' to <paramref name="next"/>.</summary>
    public void Step(LinearStep step, ReadOnlySpan<float> modelOutput, ReadOnlySpan<float> sample, Span<float> reported, Span<float> next,
        IStepNoise? noise, bool keepReported)
    {
        int n = sample.Length;
        if (step.DrawsNoise)
        {
            if (_noise.Length != n) _noise = new float[n];
            Scheduler.RequireNoise(noise, scheduler).Fill(_noise);
        }
        int depth = step.HistoryDepth;
        if (depth > _history.Count || _history.Take(depth).Any(d => d.Length != n))
        {
            throw new InvalidOperationException(
                $"The {scheduler} scheduler's step reads {depth} earlier steps on {n} values, which it does not have; call SetTimesteps first.");
        }
        step.Apply(modelOutput, sample, _history, _noise, reported[..n], next[..n]);
        if (keepReported)
        {
            // The oldest array is reused for this step's d.
            var kept = _history.Count == Kept ? _history[^1] : [];
            if (_history.Count == Kept) _history.RemoveAt(Kept - 1);
            if (kept.Length != n) kept = new float[n];
            reported[..n].CopyTo(kept);
            _history.Insert(0, kept);
        }
    }
}
