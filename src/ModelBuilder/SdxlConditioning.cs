namespace RenderFarm.ModelBuilder;

/// <summary>SDXL micro-conditioning: text_embeds [B, TextEmbedDim] and time_ids [B, 6] (the refiner: 5) → add_embedding.</summary>
public sealed record SdxlConditioning(int TextEmbedDim, int AdditionTimeEmbedDim, int TimeIdCount = 6)
{
    public int ProjectionInputDim => TextEmbedDim + TimeIdCount * AdditionTimeEmbedDim;
}
