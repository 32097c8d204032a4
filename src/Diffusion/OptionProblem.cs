namespace RenderFarm.Diffusion;

/// <summary>A setting of <see cref="DiffusionOptions"/> that cannot work: its path (e.g. <c>Cuda.ConvAlgorithmSearch</c>) and why.</summary>
public sealed record OptionProblem(string Setting, string Message)
{
    public override string ToString() => $"{Setting}: {Message}";
}
