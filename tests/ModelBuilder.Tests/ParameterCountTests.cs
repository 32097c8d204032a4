namespace RenderFarm.ModelBuilder.Tests;

/// <summary>The sd15 preset has Stable Diffusion 1.5's architecture: its parameter counts match the published model's.</summary>
public class ParameterCountTests
{
    // runwayml/stable-diffusion-v1-5: CLIPTextModel 123,060,480; UNet2DConditionModel 859,520,964;
    // AutoencoderKL 83,653,863 in total (decoder with post_quant_conv, encoder with quant_conv).
    [Theory]
    [InlineData("text_encoder", 123_060_480L)]
    [InlineData("unet", 859_520_964L)]
    public void Sd15ComponentHasThePublishedParameterCount(string component, long published)
    {
        long counted = ModelPresets.CountParameters("sd15")[component];
        Assert.Equal(published, counted);
    }

    [Fact]
    public void Sd15VaeHalvesTogetherHaveThePublishedAutoencoderKlParameterCount()
    {
        var counts = ModelPresets.CountParameters("sd15");
        Assert.Equal(83_653_863L, counts["vae_decoder"] + counts["vae_encoder"]);
        Assert.InRange(counts["vae_decoder"], 49_000_000, 50_000_000);
        Assert.InRange(counts["vae_encoder"], 33_900_000, 34_500_000);
    }
}
