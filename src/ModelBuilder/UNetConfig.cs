namespace RenderFarm.ModelBuilder;

/// <summary>
/// diffusers UNet2DConditionModel. Per down block i: BlockOut[i] channels, CrossAttention[i] (CrossAttnDownBlock2D vs
/// DownBlock2D), Heads[i] attention heads, TransformerLayers[i] transformer blocks; up blocks mirror them.
/// <see cref="TimeCondProjDim"/> (LCM-distilled UNets): a timestep_cond input [B, dim] (the guidance embedding) added to
/// the timestep embedding through time_embedding.cond_proj.
/// </summary>
public sealed record UNetConfig(
    int InChannels,
    int OutChannels,
    int[] BlockOut,
    bool[] CrossAttention,
    int[] Heads,
    int LayersPerBlock,
    int ContextDim,
    int[]? TransformerLayers = null,
    bool LinearProjection = false,
    int NormGroups = 32,
    double NormEps = 1e-5,
    SdxlConditioning? Sdxl = null,
    int? TimeCondProjDim = null)
{
    public int TimeEmbedDim => BlockOut[0] * 4;
    public int TransformerLayersAt(int block) => TransformerLayers?[block] ?? 1;
}
