namespace RenderFarm.ModelBuilder;

/// <summary>CLIP text transformer (transformers CLIPTextModel / CLIPTextModelWithProjection).</summary>
public sealed record TextEncoderConfig(
    int Hidden,
    int Layers,
    int Heads,
    int Intermediate,
    Activation Act = Activation.QuickGelu,
    int MaxPositions = 77,
    int? ProjectionDim = null,
    bool OutputHiddenStates = false,
    double LayerNormEps = 1e-5)
{
    public int HeadDim => Hidden / Heads;
}
