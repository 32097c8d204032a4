using RenderFarm.Client.Tests.Support;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Tests.Submit;

/// <summary>LoRAs a submission asks for: --lora for every image, a loras column per prompt, tags in the prompts' text.</summary>
public sealed class SubmitLoraTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly CliHarness _cli = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task RepeatedLoraOptionsGoToTheHeaderAndALorasColumnToItsPrompt()
    {
        var file = _dir.File("p.jsonl",
            "{\"prompt\":\"plain\"}\n" +
            "{\"prompt\":\"styled\",\"loras\":\"detail:0.5, mix:1:0.25\"}\n" +
            "{\"prompt\":\"listed <lora:tagged:0.3>\",\"lora\":[\"detail\"]}\n");

        var code = await _cli.RunAsync("submit", file, "--lora", "style:0.8", "--lora", "accent", "--seed", "1");

        Assert.True(code == 0, _cli.Error.ToString());
        var sent = _cli.Service.Submitted;
        Assert.Equal(
            [new Lora { Name = "style", Weight = 0.8f }, new Lora { Name = "accent", Weight = 1f }],
            sent[0].Header.Params.Loras);
        Assert.Empty(sent[1].Prompt.Loras);
        Assert.Equal([new Lora { Name = "detail", Weight = 0.5f }, new Lora { Name = "mix", Weight = 1f, UnetWeight = 0.25f }], sent[2].Prompt.Loras);
        // Tags stay in the text: the coordinator and the workers read them there.
        Assert.Equal("listed <lora:tagged:0.3>", sent[3].Prompt.Prompt);
        Assert.Equal([new Lora { Name = "detail", Weight = 1f }], sent[3].Prompt.Loras);
    }

    [Fact]
    public async Task ACsvLorasColumnIsACommaSeparatedListAndAnEmptyCellIsNone()
    {
        var file = _dir.File("p.csv", "prompt,loras\na cat,\"style:0.7, detail\"\na dog,\n");

        Assert.True(await _cli.RunAsync("submit", file, "--seed", "1") == 0, _cli.Error.ToString());

        Assert.Equal([new Lora { Name = "style", Weight = 0.7f }, new Lora { Name = "detail", Weight = 1f }], _cli.Service.Submitted[1].Prompt.Loras);
        Assert.Empty(_cli.Service.Submitted[2].Prompt.Loras);
    }

    [Theory]
    [InlineData("style:lots", "--lora 'style:lots'")]
    [InlineData("a<b:1", "--lora")]
    public async Task ALoraOptionThatIsNotNameAndWeightIsAUsageError(string spec, string expected)
    {
        var file = _dir.File("p.txt", "a cat\n");

        Assert.Equal(2, await _cli.RunAsync("submit", file, "--lora", spec));

        Assert.Contains(expected, _cli.Error.ToString());
        Assert.Equal(0, _cli.Service.SubmitCalls);
    }

    [Fact]
    public async Task AMalformedTagOrLorasCellIsAnErrorOnItsLineAndNothingIsSent()
    {
        var tag = _dir.File("tag.txt", "fine\na cat <lora:style:strong>\n");
        Assert.Equal(2, await _cli.RunAsync("submit", tag));
        Assert.Contains("tag.txt:2", _cli.Error.ToString());
        Assert.Contains("'strong' where a multiplier (a number) belongs", _cli.Error.ToString());

        var cell = _dir.File("cell.jsonl", "{\"prompt\":\"a\",\"loras\":[\"ok\", 3]}\n");
        Assert.Equal(2, await _cli.RunAsync("submit", cell));
        Assert.Contains("cell.jsonl:1", _cli.Error.ToString());
        Assert.Contains("'loras' must hold strings", _cli.Error.ToString());
        Assert.Equal(0, _cli.Service.SubmitCalls);
    }
}
