using RenderFarm.Client.Tests.Support;
using RenderFarm.GenerationRules;
using RenderFarm.Imaging;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Tests.Submit;

/// <summary>ControlNets a submission asks for: --control for every prompt without its own, a control column per prompt.</summary>
public sealed class SubmitControlNetTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly CliHarness _cli = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>A real 32×32 PNG: black with a white square (the canny module decodes it).</summary>
    private string Png(string name, int top = 8)
    {
        var rgb = new byte[32 * 32 * 3];
        for (int y = top; y < 24; y++)
            for (int x = 8; x < 24; x++)
                rgb[(y * 32 + x) * 3] = rgb[(y * 32 + x) * 3 + 1] = rgb[(y * 32 + x) * 3 + 2] = 255;
        var path = Path.Combine(_dir.Path, name);
        File.WriteAllBytes(path, PngWriter.Encode(new DecodedImage(rgb, 32, 32, 3)));
        return path;
    }

    [Theory]
    [InlineData("canny:edges.png", "canny", "edges.png", 1f, "none")]
    [InlineData("canny:edges.png:0.8", "canny", "edges.png", 0.8f, "none")]
    [InlineData("depth:C:\\maps\\d.png:1.5:canny", "depth", "C:\\maps\\d.png", 1.5f, "canny")]
    [InlineData("canny:dir:with:colons.png:0", "canny", "dir:with:colons.png", 0f, "none")]
    public void ASpecIsModelImageWeightAndModule(string text, string model, string image, float weight, string module) =>
        Assert.Equal(new ControlNetSpec(model, image, weight, module), ControlNetSpec.Parse(text));

    [Theory]
    [InlineData("canny:edges.png:0.8:0.2-0.6", "edges.png", "none", 0.2, 0.6, false)]
    [InlineData("canny:edges.png:1:canny:0-0.5:guess", "edges.png", "canny", 0.0, 0.5, true)]
    [InlineData("canny:edges.png:1:guess", "edges.png", "none", 0.0, 1.0, true)]
    [InlineData("canny:C:\\maps\\1-2.png:1:.5-.5", "C:\\maps\\1-2.png", "none", 0.5, 0.5, false)]
    [InlineData("canny:shots:0.1-0.2.png:1", "shots:0.1-0.2.png", "none", 0.0, 1.0, false)]
    public void AGuidanceWindowAndGuessModeFollowTheWeight(string text, string image, string module, double start, double end, bool guess) =>
        Assert.Equal(new ControlNetSpec("canny", image, ControlNetSpec.Parse(text).Weight, module, start, end, guess), ControlNetSpec.Parse(text));

    [Theory]
    [InlineData("canny")]
    [InlineData(":edges.png")]
    [InlineData("canny:edges.png:canny")]
    [InlineData("canny:edges.png:NaN")]
    [InlineData("canny:edges.png:0.6-0.2")]     // a window needs a weight before it
    [InlineData("canny:edges.png:1:0.6-0.2")]   // start after end
    [InlineData("canny:edges.png:1:0-1.5")]     // beyond the last step
    [InlineData("canny:edges.png:guess")]
    public void AMalformedSpecIsRefused(string text) => Assert.Throws<ArgumentException>(() => ControlNetSpec.Parse(text));

    [Fact]
    public async Task ControlNetsWithARefinerAreSubmittedAndSubmitSaysTheySteerTheBaseOnly()
    {
        var edges = Png("edges.png");
        // The refiner's switch hands over to a model with no ControlNet (diffusers and A1111 have none for a refiner):
        // accepted, as A1111 does it, and said, so nobody expects the refiner's steps to follow the edges.
        var file = _dir.File("p.jsonl",
            "{\"prompt\":\"controlled and refined\"}\n" +
            "{\"prompt\":\"controlled only\",\"refiner\":\"none\"}\n" +
            "{\"prompt\":\"own control, refined\",\"control\":[\"depth:edges.png\"]}\n");
        const string note = "note: 2 of 3 prompts use ControlNets with a refiner: the ControlNets steer the base's steps only, up to the switch; " +
                            "the refiner renders the rest without them (its PNGs still list them)";

        Assert.Equal(0, await _cli.RunAsync("submit", file, "--control", $"canny:{edges}", "--refiner", "xl-refiner", "--seed", "1", "--dry-run"));
        Assert.Contains(note, _cli.Out.ToString());

        Assert.Equal(0, await _cli.RunAsync("submit", file, "--control", $"canny:{edges}", "--refiner", "xl-refiner", "--seed", "1"));
        Assert.Contains(note, _cli.Error.ToString());

        // Without a refiner nothing is said.
        Assert.Equal(0, await _cli.RunAsync("submit", file, "--control", $"canny:{edges}", "--seed", "1", "--dry-run"));
        Assert.DoesNotContain("note:", _cli.Out.ToString().Split("dry run:")[^1]);

        Assert.Equal(0, await _cli.RunAsync("submit", "--help"));
        Assert.Contains("With --refiner they steer the base's steps only", _cli.Out.ToString().ReplaceLineEndings(" "));
    }

    [Fact]
    public async Task TheControlFlagGoesToPromptsWithoutTheirOwnAndEachImageIsSentOnceBeforeItsFirstPrompt()
    {
        var edges = Png("edges.png");
        var depth = Png("depth.png", top: 4);
        var file = _dir.File("p.jsonl",
            "{\"prompt\":\"plain\"}\n" +
            "{\"prompt\":\"own\",\"control\":[\"depth:depth.png:0.5\", \"canny:edges.png\"]}\n" +
            "{\"prompt\":\"again\"}\n");

        var code = await _cli.RunAsync("submit", file, "--control", $"canny:{edges}:0.8", "--seed", "1");

        Assert.True(code == 0, _cli.Error.ToString());
        var sent = _cli.Service.Submitted;
        Assert.Empty(sent[0].Header.Params.ControlNets); // never in the header: the images come later
        var images = sent.Where(r => r.InputImage is not null).Select(r => r.InputImage.Name).ToList();
        Assert.Equal(2, images.Count); // edges.png and depth.png, once each
        var prompts = sent.Where(r => r.Prompt is not null).Select(r => r.Prompt).ToList();
        Assert.Equal([new ControlNetUnit { Model = "canny", Image = images[0], Weight = 0.8f, Module = "none" }], prompts[0].ControlNets);
        Assert.Equal(
            [new ControlNetUnit { Model = "depth", Image = images[1], Weight = 0.5f, Module = "none" }, new ControlNetUnit { Model = "canny", Image = images[0], Weight = 1f, Module = "none" }],
            prompts[1].ControlNets);
        Assert.Equal(prompts[0].ControlNets, prompts[2].ControlNets);
        Assert.All(prompts.SelectMany(p => p.ControlNets), u => Assert.True(u is { GuidanceStart: 0, HasGuidanceEnd: false, GuessMode: false }));
        var order = sent.Select(r => r.InputImage?.Name ?? r.Prompt?.Prompt ?? "header").ToList();
        Assert.True(order.IndexOf(images[1]) < order.IndexOf("own"));
    }

    [Fact]
    public async Task TheCannyModuleSendsTheImagesEdgesAndACsvCellListsUnitsSeparatedBySemicolons()
    {
        var photo = Png("photo.png");
        var file = _dir.File("p.csv", "prompt,control\na cat,\"canny:photo.png:1:canny; depth:photo.png:0.3:0.1-0.9:guess\"\na dog,\n");

        Assert.True(await _cli.RunAsync("submit", file, "--seed", "1") == 0, _cli.Error.ToString());

        var sent = _cli.Service.Submitted;
        var units = sent.First(r => r.Prompt?.Prompt == "a cat").Prompt.ControlNets;
        Assert.Equal(["canny", "none"], units.Select(u => u.Module));
        Assert.Equal([(0.0, 1.0, false), (0.1, 0.9, true)], units.Select(u => (u.GuidanceStart, u.HasGuidanceEnd ? u.GuidanceEnd : 1, u.GuessMode)));
        Assert.NotEqual(units[0].Image, units[1].Image); // the edges are another image than the photo
        var edges = ImageDecoder.Decode(sent.First(r => r.InputImage?.Name == units[0].Image).InputImage.Data.ToByteArray(), grey: true, long.MaxValue, "edges");
        Assert.Equal(CannyEdges.Detect(ImageDecoder.Decode(File.ReadAllBytes(photo), false, long.MaxValue, "photo")).Pixels, edges.Pixels);
        Assert.Empty(sent.First(r => r.Prompt?.Prompt == "a dog").Prompt.ControlNets);
    }

    [Fact]
    public async Task AMissingControlImageOrAMalformedControlCellIsAnErrorBeforeAnythingIsSent()
    {
        var file = _dir.File("p.txt", "a cat\n");
        Assert.Equal(2, await _cli.RunAsync("submit", file, "--control", "canny:nosuch.png"));
        Assert.Contains("--control", _cli.Error.ToString());

        var cell = _dir.File("c.jsonl", "{\"prompt\":\"a\",\"control\":\"canny\"}\n");
        Assert.Equal(2, await _cli.RunAsync("submit", cell));
        Assert.Contains("c.jsonl:1", _cli.Error.ToString());
        Assert.Equal(0, _cli.Service.SubmitCalls);
    }
}
