using Microsoft.ML.OnnxRuntime;
using RenderFarm.ModelBuilder;

namespace RenderFarm.Diffusion.Tests;

public class TextualInversionTests(LoraFixture fixture) : IClassFixture<LoraFixture>
{
    [Fact]
    public void EmbeddingsThatFitTheModelAreLoadedAndTheOthersSaidWhy()
    {
        var tiny = fixture.Pipeline("tiny");
        Assert.Equal(["myemb"], tiny.Embeddings);
        Assert.Contains("second text encoder", tiny.SkippedEmbeddings["xlemb"]);
        var xl = fixture.Pipeline("tiny-sdxl");
        Assert.Equal(["xlemb"], xl.Embeddings);
        Assert.Contains("text_encoder_2", xl.SkippedEmbeddings["myemb"]);
    }

    [Fact]
    public void AnEmbeddingWordEncodesAsTheEmbeddingsRows()
    {
        // tiny-sdxl's encoders output hidden_states.0 = token embedding + position embedding: at the embedding word's
        // position that is the file's vector plus the position's row.
        var prompts = fixture.Pipeline("tiny-sdxl").PlainPrompts;
        var file = LoraFixture.ReadSafeTensors(Path.Combine(fixture.EmbeddingDirectory, "xlemb.safetensors"));
        for (int s = 0; s < 2; s++)
        {
            var stage = prompts.Stages[s];
            var plain = stage.Tokenizer.EncodeTokens("a cat");
            var tokens = stage.Tokenizer.EncodeTokens("a xlemb cat");
            int vocabulary = new[] { stage.Tokenizer.BosId, stage.Tokenizer.EosId }.Max() + 1;
            Assert.Equal([plain[0], vocabulary, plain[1]], tokens);
            var ids = stage.Tokenizer.Encode("a xlemb cat");
            using var runOptions = new RunOptions();
            var hidden = stage.Encoder.Run(ids, 1, runOptions, ["hidden_states.0"])[0].Values;
            int width = hidden.Length / ids.Length;
            string component = s == 0 ? "text_encoder" : "text_encoder_2";
            var (positions, _) = LoraFixture.BuilderWeight("tiny-sdxl", component, "text_model.embeddings.position_embedding.weight");
            var vector = file[s == 0 ? "clip_l" : "clip_g"].Values;
            for (int h = 0; h < width; h++)
            {
                Assert.Equal(vector[h] + positions[2 * width + h], hidden[2 * width + h], 5);
            }
        }
    }

    [Fact]
    public async Task PromptsWithoutTheWordRenderAsWithoutTheLibraryAndWithItDifferently()
    {
        using var plain = StableDiffusionPipeline.Load(fixture.Model("tiny"));
        var request = new GenerationRequest([new ImagePrompt("a quiet harbour", "lowres", 4)], 64, 64, 3, 7.5f, "euler", "tiny");
        var without = await plain.GenerateAsync(request);
        var extended = fixture.Pipeline("tiny");
        var same = await extended.GenerateAsync(request);
        var used = await extended.GenerateAsync(request with { Images = [new ImagePrompt("a quiet harbour, myemb", "lowres", 4)] });
        Assert.Equal(PngPixels.Decode(without[0].Png), PngPixels.Decode(same[0].Png));
        Assert.NotEqual(PngPixels.Decode(without[0].Png), PngPixels.Decode(used[0].Png));
    }
}
