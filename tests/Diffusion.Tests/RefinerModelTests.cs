using RenderFarm.Diffusion.Generation;
using RenderFarm.Diffusion.Imaging;

namespace RenderFarm.Diffusion.Tests;

/// <summary>The SDXL refiner's directory (text_encoder_2 only, 5-value time_ids with aesthetic scores) loads and renders.</summary>
public class RefinerModelTests(PresetModels models) : IClassFixture<PresetModels>
{
    [Fact]
    public void TheRefinersTimeIdsCarryTheAestheticScoreNegativeRowsFirst()
    {
        Assert.Equal([48, 64, 0, 0, 2.5f, 48, 64, 0, 0, 6f], UNetConditioning.TimeIdRows(5, 2, 64, 48, guided: true));
        Assert.Equal([48, 64, 0, 0, 6f], UNetConditioning.TimeIdRows(5, 1, 64, 48, guided: false));
        Assert.Equal([48, 64, 0, 0, 48, 64], UNetConditioning.TimeIdRows(6, 1, 64, 48, guided: false));
    }

    [Fact]
    public async Task ARefinerDirectoryWithOnlyTheSecondTextEncoderLoadsAndRefinesAnImage()
    {
        Assert.False(Directory.Exists(Path.Combine(models.Directory("tiny-sdxl-refiner"), "text_encoder")));
        var pipeline = models.Pipeline("tiny-sdxl-refiner");
        Assert.Equal(["text_encoder_2"], pipeline.PlainPrompts.Stages.Select(s => s.Encoder.Name));
        Assert.True(pipeline.PlainPrompts.PenultimateByDefault);

        var request = new GenerationRequest([new ImagePrompt("a harbour", "blurry", 4)], 64, 48, 4, 5f, "euler", "tiny-sdxl-refiner")
        {
            InitImage = TestImages.Gradient(64, 48),
            Strength = 0.3f,
        };
        var images = await pipeline.GenerateAsync(request);
        Assert.Equal((64, 48), (PngMetadata.Read(images[0].Png).Width, PngMetadata.Read(images[0].Png).Height));
        Assert.True(PngPixels.Decode(images[0].Png).Distinct().Count() > 16, "the image should not be flat");
        // Guided, the negative rows (aesthetic score 2.5) are the other half of the batch: the negative prompt matters.
        var without = await pipeline.GenerateAsync(request with { Images = [new ImagePrompt("a harbour", "", 4)] });
        Assert.NotEqual(PngPixels.Decode(images[0].Png), PngPixels.Decode(without[0].Png));
    }
}
