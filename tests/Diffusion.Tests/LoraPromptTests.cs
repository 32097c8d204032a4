using RenderFarm.GenerationRules;
using RenderFarm.Diffusion.Lora;

namespace RenderFarm.Diffusion.Tests;

public class LoraPromptTests
{
    [Fact]
    public void TagsAreStrippedAndReadAsA1111ReadsThem()
    {
        var (text, loras) = LoraPrompt.Parse("a cat <lora:style:0.8>, <lora:detail> (sharp:1.2) <lora:mix:0.5:1.5> <lyco:old:0.3>");
        Assert.Equal("a cat , (sharp:1.2)", string.Join(' ', text.Split(' ', StringSplitOptions.RemoveEmptyEntries)));
        Assert.Equal(
            [new LoraWeight("style", 0.8f), new LoraWeight("detail", 1f), new LoraWeight("mix", 0.5f, 1.5f), new LoraWeight("old", 0.3f)],
            loras.Items);
    }

    [Fact]
    public void NamedMultipliersFollowA1111()
    {
        // te= sets the text encoder's multiplier, which the UNet's defaults to; unet= sets the UNet's.
        Assert.Equal(new LoraWeight("a", 0.5f, 0.5f), LoraPrompt.Parse("<lora:a:0.8:te=0.5>").Loras.Items[0]);
        Assert.Equal(new LoraWeight("a", 0.8f, 0.2f), LoraPrompt.Parse("<lora:a:0.8:unet=0.2>").Loras.Items[0]);
        Assert.Equal(new LoraWeight("a", 1f, 1f), LoraPrompt.Parse("<lora:a:dyn=8>").Loras.Items[0]);
    }

    [Fact]
    public void APromptWithoutTagsIsUntouched()
    {
        var prompt = "a <b> c (d:1.1) [e]";
        var (text, loras) = LoraPrompt.Parse(prompt);
        Assert.Same(prompt, text);
        Assert.True(loras.IsEmpty);
    }

    [Fact]
    public void AMultiplierThatIsNotANumberIsAnError()
    {
        var ex = Assert.Throws<ArgumentException>(() => LoraPrompt.Parse("x <lora:a:lots>"));
        Assert.Contains("<lora:a:lots>", ex.Message);
    }

    [Fact]
    public void RepeatedNamesWhoseMultipliersAddUpPastFloatAreAnError()
    {
        // Each tag is finite; their sum is not, and merged weights scaled by it would make a NaN image.
        var ex = Assert.Throws<ArgumentException>(() => LoraPrompt.Parse("a cat <lora:x:3e38> <lora:x:3e38>"));
        Assert.Contains("'x'", ex.Message);
        Assert.Throws<ArgumentException>(() => LoraSet.Of(new LoraWeight("x", 1f, -3e38f), new LoraWeight("x", 1f, -3e38f)));
        Assert.Throws<ArgumentException>(() => LoraSet.Of(new LoraWeight("x", 3e38f)).With(LoraPrompt.Parse("<lora:x:3e38>").Loras));
    }

    [Fact]
    public void SetsAreEqualWhateverTheOrderAndRepeatedNamesAddUp()
    {
        var a = LoraSet.Of(new LoraWeight("a", 0.5f), new LoraWeight("b", 1f), new LoraWeight("a", 0.25f));
        var b = LoraSet.Of(new LoraWeight("b", 1f), new LoraWeight("a", 0.75f));
        Assert.Equal(a, b);
        Assert.Equal(a.Key, b.Key);
        Assert.NotEqual(a, LoraSet.Of(new LoraWeight("a", 0.75f)));
        Assert.Equal("<lora:a:0.75> <lora:b:1>", a.ToString());
        Assert.Equal(LoraSet.Of(new LoraWeight("x", 1f), new LoraWeight("a", 1f)),
            LoraPrompt.ForImage(LoraSet.Of(new LoraWeight("x", 1f)), "p <lora:a:1>", ""));
    }

    [Fact]
    public void ImagesAreGroupedByTheirSets()
    {
        var request = new GenerationRequest(
        [
            new ImagePrompt("a", "", 1), new ImagePrompt("b <lora:s:1>", "", 2), new ImagePrompt("<lora:s:1> c", "", 3),
        ], 64, 64, 1, 1f) { Loras = LoraSet.Of(new LoraWeight("base", 0.5f)) };
        var sets = StableDiffusionPipeline.LorasOf(request);
        Assert.Equal(LoraSet.Of(new LoraWeight("base", 0.5f)), sets[0]);
        Assert.Equal(sets[1], sets[2]);
        Assert.NotEqual(sets[0], sets[1]);
    }

    [Fact]
    public void TheHashesParameterQuotesAsA1111()
    {
        var value = LoraHashes.Format(LoraSet.Of(new LoraWeight("a:b,c", 1f), new LoraWeight("é\"q", 1f)), n => n.Length.ToString("x12"));
        Assert.Equal("\"abc: 000000000005, é\\\"q: 000000000003\"", value);
        Assert.Null(LoraHashes.Format(LoraSet.Empty, _ => ""));
    }
}
