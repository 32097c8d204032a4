using Google.Protobuf;
using RenderFarm.ModelBuilder.Onnx;

namespace RenderFarm.Diffusion.Tests;

/// <summary>An export whose UNet fixes the batch size runs in chunks of that size (the last one padded) with the same results.</summary>
public class FixedBatchExportTests(PresetModels models) : IClassFixture<PresetModels>
{
    [Fact]
    public async Task AUnetWithAFixedBatchRendersInChunksAsTheDynamicOneDoes()
    {
        var source = models.Directory("tiny");
        var copy = Directory.CreateTempSubdirectory("renderfarm-fixed-batch").FullName;
        try
        {
            foreach (var file in Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories))
            {
                var target = Path.Combine(copy, Path.GetRelativePath(source, file));
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                File.Copy(file, target);
            }
            // Batch dimension of sample, encoder_hidden_states and out_sample fixed to 4: 3 images with CFG are 6 rows,
            // run as a chunk of 4 and a chunk of 2 padded to 4.
            var path = Path.Combine(copy, "unet", "model.onnx");
            var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(path));
            foreach (var value in model.Graph.Input.Concat(model.Graph.Output).Where(v => v.Name != "timestep"))
            {
                value.Type.TensorType.Shape.Dim[0] = new TensorShapeProto.Types.Dimension { DimValue = 4 };
            }
            File.WriteAllBytes(path, model.ToByteArray());

            var request = new GenerationRequest(
                [new ImagePrompt("a small boat", "storm", 21), new ImagePrompt("a tall tree", "", 22), new ImagePrompt("a red fox", "", 23)],
                64, 64, 3, 5f, "euler", "tiny");
            using var fixedBatch = StableDiffusionPipeline.Load(copy);
            var chunked = await fixedBatch.GenerateAsync(request);
            var dynamic = await models.Pipeline("tiny").GenerateAsync(request);
            Assert.Equal(dynamic.Select(i => PngPixels.Decode(i.Png)), chunked.Select(i => PngPixels.Decode(i.Png)));
        }
        finally
        {
            Directory.Delete(copy, recursive: true);
        }
    }
}
