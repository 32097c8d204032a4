namespace RenderFarm.ModelBuilder;

/// <summary>diffusers AutoencoderKL (encoder + decoder share the widths; decoder blocks have LayersPerBlock + 1 resnets).</summary>
public sealed record VaeConfig(
    int[] BlockOut,
    int LayersPerBlock,
    int NormGroups = 32,
    int ImageChannels = 3,
    int LatentChannels = 4,
    double ScalingFactor = 0.18215,
    double NormEps = 1e-6)
{
    public int DownFactor => 1 << (BlockOut.Length - 1);
}
