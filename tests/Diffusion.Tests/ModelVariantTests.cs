using RenderFarm.Diffusion.Imaging;
using RenderFarm.ModelBuilder;

namespace RenderFarm.Diffusion.Tests;

/// <summary>The pipeline adapts to what a model directory declares: element types, timestep type, hidden size, prediction type.</summary>
public class ModelVariantTests
{
    [Theory]
    [InlineData("tiny-fp16")]            // float16 inputs/outputs, float16 timestep
    [InlineData("tiny-int64-timestep")]  // int64 timestep and int64 input_ids
    [InlineData("tiny-sd2")]             // 1024-wide text states, v-prediction
    public async Task AVariantPresetRendersDeterministically(string preset)
    {
        var directory = Directory.CreateTempSubdirectory("renderfarm-" + preset).FullName;
        try
        {
            ModelPresets.Write(preset, directory);
            using var pipeline = StableDiffusionPipeline.Load(directory);
            var request = new GenerationRequest(
                [new ImagePrompt("a small boat", "storm", 21), new ImagePrompt("a tall tree", "", 22)],
                64, 64, 3, 5f, "dpmpp_2m", preset);
            var first = await pipeline.GenerateAsync(request);
            var second = await pipeline.GenerateAsync(request);
            Assert.Equal(first.Select(i => i.Png), second.Select(i => i.Png));
            Assert.Equal((64, 64), (PngMetadata.Read(first[0].Png).Width, PngMetadata.Read(first[0].Png).Height));
            Assert.NotEqual(PngPixels.Decode(first[0].Png), PngPixels.Decode(first[1].Png));
            Assert.True(PngPixels.Decode(first[0].Png).Distinct().Count() > 16);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}
