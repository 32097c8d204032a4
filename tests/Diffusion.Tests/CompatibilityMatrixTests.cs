using RenderFarm.Diffusion.Imaging;

namespace RenderFarm.Diffusion.Tests;

/// <summary>Every ModelBuilder preset but sd15 × every mode it supports renders: right size, finite pixels (not flat), deterministic.</summary>
public class CompatibilityMatrixTests(PresetModels models) : IClassFixture<PresetModels>
{
    public static TheoryData<string, string> Cases()
    {
        var data = new TheoryData<string, string>();
        foreach (var preset in PresetModels.Small)
        {
            if (preset != "tiny-inpaint")
            {
                data.Add(preset, "txt2img");
                data.Add(preset, "img2img");
            }
            data.Add(preset, "inpaint");
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task APresetRendersInAMode(string preset, string mode)
    {
        var request = new GenerationRequest(
            [new ImagePrompt("a small boat", "storm", 21), new ImagePrompt("a tall (tree:1.2)", "", 22)], 64, 48, 3, 5f, "dpmpp_2m", preset);
        request = mode switch
        {
            "img2img" => request with { InitImage = TestImages.Gradient(64, 48), Strength = 0.7f },
            "inpaint" => request with { InitImage = TestImages.Gradient(64, 48), MaskImage = TestImages.Mask(64, 48, 255, leftHalf: true) },
            _ => request,
        };
        var pipeline = models.Pipeline(preset);
        var first = await pipeline.GenerateAsync(request);
        var second = await pipeline.GenerateAsync(request);

        Assert.Equal(first.Select(i => i.Png), second.Select(i => i.Png));
        foreach (var image in first)
        {
            var (width, height, text) = PngMetadata.Read(image.Png);
            Assert.Equal((64, 48), (width, height));
            Assert.Contains("Sampler: DPM++ 2M", text["parameters"]);
            Assert.True(PngPixels.Decode(image.Png).Distinct().Count() > 16, "the image should not be flat (NaN renders as black)");
        }
        Assert.NotEqual(PngPixels.Decode(first[0].Png), PngPixels.Decode(first[1].Png));
    }
}
