using System.Security.Cryptography;
using RenderFarm.Client.Tests.Support;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Tests.Submit;

/// <summary>Init images, masks and strength in <c>farm submit</c>: the columns, the flags, and the request stream they produce.</summary>
public class SubmitInputImageTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly CliHarness _cli = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>A file the client takes for a PNG: the signature, then <paramref name="size"/> bytes in all.</summary>
    private string Png(string relativePath, int size, int seed = 1)
    {
        var bytes = new byte[size];
        new Random(seed).NextBytes(bytes);
        byte[] signature = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];
        signature.CopyTo(bytes, 0);
        var path = Path.Combine(_dir.Path, relativePath);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private string PromptFile(string relativePath, string contents)
    {
        var path = Path.Combine(_dir.Path, relativePath);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, contents);
        return path;
    }

    private static string NameOf(string path) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path)));

    /// <summary>The stream as one line per message: "header", "image NAME", "prompt TEXT init=NAME mask=NAME strength=X".</summary>
    private string[] Stream() => _cli.Service.Submitted.Select(r => r.ItemCase switch
    {
        SubmitJobRequest.ItemOneofCase.Header => "header",
        SubmitJobRequest.ItemOneofCase.InputImage => $"image {r.InputImage.Name}{(r.InputImage.More ? " more" : "")}",
        _ => $"prompt {r.Prompt.Prompt}" +
             (r.Prompt.HasInitImage ? $" init={r.Prompt.InitImage}" : "") +
             (r.Prompt.HasMaskImage ? $" mask={r.Prompt.MaskImage}" : "") +
             (r.Prompt.HasStrength ? $" strength={r.Prompt.Strength}" : ""),
    }).ToArray();

    [Fact]
    public async Task DryRunCountsTheStepsAnInitImagesStrengthLeavesAsDiffusersRunsThem()
    {
        Png("frames/a.png", 300);
        Png("masks/m.png", 200, seed: 3);
        // 20 steps: int(20 · 0.3) = 6 at the prompt's own strength; --strength 0.5 for the img2img and the inpainting
        // prompts without their own: 10 each; txt2img 20. (6 + 10 + 10 + 20) × 2 for guidance.
        var file = PromptFile("p.jsonl",
            "{\"prompt\":\"one\",\"init_image\":\"frames/a.png\",\"strength\":0.3}\n" +
            "{\"prompt\":\"two\",\"init_image\":\"frames/a.png\"}\n" +
            "{\"prompt\":\"three\",\"init_image\":\"frames/a.png\",\"mask\":\"masks/m.png\"}\n" +
            "{\"prompt\":\"four\"}\n");

        Assert.Equal(0, await _cli.RunAsync("submit", file, "--seed", "1", "--steps", "20", "--strength", "0.5", "--dry-run"));
        Assert.Contains("unet:      92 steps (4 images × 20 steps × 2 (classifier-free guidance); prompts' own steps, guidance, img2img strength and hires counted)",
            _cli.Out.ToString());

        // Without --strength: img2img's default 0.8 (16 steps), inpainting's 1 (20 steps); each hires pass runs its own 5:
        // (11 + 21 + 25 + 25) × 2.
        Assert.Equal(0, await _cli.RunAsync("submit", file, "--seed", "1", "--steps", "20", "--hires", "2x", "--hires-steps", "5", "--dry-run"));
        Assert.Contains("unet:      164 steps (4 images × (20 + 5 hires) steps", _cli.Out.ToString());
    }

    [Fact]
    public async Task EachImageIsSentOnceJustBeforeTheFirstPromptThatNamesItAndPromptsReferToItsHash()
    {
        var a = Png("batch/frames/a.png", 300, seed: 1);
        var b = Png("batch/frames/b.png", 400, seed: 2);
        var m = Png("batch/masks/m.png", 200, seed: 3);
        // Relative paths are the prompt file's folder's, not the current directory's.
        var file = PromptFile("batch/p.jsonl",
            "{\"prompt\":\"one\",\"init_image\":\"frames/a.png\",\"strength\":0.4}\n" +
            "{\"prompt\":\"two\",\"image\":\"frames/a.png\"}\n" +
            "{\"prompt\":\"three\",\"init_image\":\"frames/b.png\",\"mask\":\"masks/m.png\"}\n" +
            "{\"prompt\":\"four\",\"init_image\":\"" + b.Replace("\\", "\\\\") + "\",\"mask_image\":\"masks/../masks/m.png\"}\n" +
            "{\"prompt\":\"five\"}\n");

        var code = await _cli.RunAsync("submit", file, "--seed", "1");

        Assert.True(code == 0, _cli.Error.ToString());
        string na = NameOf(a), nb = NameOf(b), nm = NameOf(m);
        Assert.Equal(
        [
            "header",
            $"image {na}",
            $"prompt one init={na} strength=0.4",
            $"prompt two init={na}",
            $"image {nb}",
            $"image {nm}",
            $"prompt three init={nb} mask={nm}",
            $"prompt four init={nb} mask={nm}",
            "prompt five",
        ], Stream());
        Assert.Equal(File.ReadAllBytes(b), _cli.Service.Submitted[4].InputImage.Data.ToByteArray());
        Assert.Equal(0f, _cli.Service.Submitted[0].Header.Params.Strength); // no --strength: the pipeline's default
        Assert.Contains("; 3 input images)", _cli.Error.ToString());
    }

    [Fact]
    public async Task AnImageLargerThanOneMessageGoesInChunksOfAtMostOneMebibyteWithMoreOnAllButTheLast()
    {
        var big = Png("big.png", (5 * 1024 * 1024 / 2) + 7, seed: 4); // 2.5 MiB and a bit
        var file = PromptFile("p.txt", "a\nb\n");

        var code = await _cli.RunAsync("submit", file, "--init-image", big);

        Assert.True(code == 0, _cli.Error.ToString());
        var chunks = _cli.Service.Submitted.Where(r => r.ItemCase == SubmitJobRequest.ItemOneofCase.InputImage).Select(r => r.InputImage).ToList();
        Assert.Equal([1024 * 1024, 1024 * 1024, (1024 * 1024 / 2) + 7], chunks.Select(c => c.Data.Length));
        Assert.Equal([true, true, false], chunks.Select(c => c.More));
        Assert.All(chunks, c => Assert.Equal(NameOf(big), c.Name));
        Assert.Equal(File.ReadAllBytes(big), chunks.SelectMany(c => c.Data.ToByteArray()).ToArray());
        // The chunks come together, after the header and before the first prompt; the second prompt sends nothing new.
        Assert.Equal(["header", .. Enumerable.Repeat($"image {NameOf(big)} more", 2), $"image {NameOf(big)}",
            $"prompt a init={NameOf(big)}", $"prompt b init={NameOf(big)}"], Stream());
    }

    [Fact]
    public async Task FlagsAreDefaultsForPromptsThatSetNoneAndTheDefaultStrengthTravelsInTheHeader()
    {
        var photo = Png("photo.png", 100, seed: 5);
        var mask = Png("mask.png", 100, seed: 6);
        var own = Png("rows/own.png", 100, seed: 7);
        var ownMask = Png("rows/own-mask.png", 100, seed: 8);
        var file = PromptFile("rows/p.csv",
            "prompt,init_image,mask,strength\n" +
            "default everything,,,\n" +
            "own image,own.png,,\n" +
            "own mask and strength,,own-mask.png,0.9\n");

        var code = await _cli.RunAsync("submit", file, "--init-image", photo, "--mask", mask, "--strength", "0.6");

        Assert.True(code == 0, _cli.Error.ToString());
        var header = _cli.Service.Submitted[0].Header;
        Assert.Equal(0.6f, header.Params.Strength);
        string np = NameOf(photo), nm = NameOf(mask), no = NameOf(own), nom = NameOf(ownMask);
        Assert.Equal(
        [
            "header",
            $"image {np}", $"image {nm}", $"prompt default everything init={np} mask={nm}",
            $"image {no}", $"prompt own image init={no} mask={nm}",
            $"image {nom}", $"prompt own mask and strength init={np} mask={nom} strength=0.9",
        ], Stream());
    }

    [Fact]
    public async Task TextPromptFilesGetImagesOnlyFromTheFlags()
    {
        var photo = Png("photo.png", 64);
        var file = PromptFile("p.txt", "a cat\n# a comment\na dog\n");

        Assert.Equal(0, await _cli.RunAsync("submit", file, "--init-image", photo, "--strength", "0.3"));

        Assert.Equal(["header", $"image {NameOf(photo)}", $"prompt a cat init={NameOf(photo)}", $"prompt a dog init={NameOf(photo)}"], Stream());
        Assert.Equal(0.3f, _cli.Service.Submitted[0].Header.Params.Strength);
    }

    [Fact]
    public async Task TwoPathsWithTheSameBytesAreSentOnceUnderOneName()
    {
        var first = Png("x/frame.png", 500, seed: 9);
        var copy = Path.Combine(_dir.Path, "y", "frame-copy.png");
        Directory.CreateDirectory(Path.GetDirectoryName(copy)!);
        File.Copy(first, copy);
        var file = PromptFile("p.csv", "prompt,image\na,x/frame.png\nb,y/frame-copy.png\n");

        Assert.Equal(0, await _cli.RunAsync("submit", file));

        Assert.Equal(["header", $"image {NameOf(first)}", $"prompt a init={NameOf(first)}", $"prompt b init={NameOf(first)}"], Stream());
    }

    [Fact]
    public async Task DryRunShowsTheDistinctInputImagesAndTheirBytesAndSendsNothing()
    {
        Png("f/1.png", 1000);
        Png("f/2.png", 2000);
        Png("f/m.png", 48);
        var file = PromptFile("p.jsonl",
            "{\"prompt\":\"a\",\"init_image\":\"f/1.png\"}\n" +
            "{\"prompt\":\"b\",\"init_image\":\"f/2.png\",\"mask\":\"f/m.png\"}\n" +
            "{\"prompt\":\"c\",\"init_image\":\"f/1.png\",\"mask\":\"f/m.png\"}\n" +
            "{\"prompt\":\"d\"}\n");

        Assert.Equal(0, await _cli.RunAsync("submit", file, "--dry-run", "--strength", "0.5"));

        var text = _cli.Out.ToString();
        Assert.Contains("inputs:    3 distinct init images and masks, 3048 bytes (3.0 KiB), each sent once (3 of 4 prompts start from an image)", text);
        Assert.Contains(" strength=0.5", text);
        Assert.Equal(0, _cli.Service.SubmitCalls);
    }

    [Fact]
    public async Task DryRunOfATextToImageBatchHasNoInputsLine()
    {
        var file = PromptFile("p.txt", "a cat\n");

        Assert.Equal(0, await _cli.RunAsync("submit", file, "--dry-run"));

        Assert.DoesNotContain("inputs:", _cli.Out.ToString());
    }

    [Theory]
    [InlineData("missing.png", "init image {0}: no such file")]
    [InlineData("notes.txt", "init image {0} is not a PNG or JPEG image")]
    [InlineData("empty.png", "init image {0} is empty")]
    [InlineData("sub", "init image {0} is a directory, not an image")]
    public async Task AnUnusableInitImageNamesFileAndLineOfItsFirstUseAndNothingIsSent(string name, string reason)
    {
        Png("ok.png", 100);
        File.WriteAllText(Path.Combine(_dir.Path, "notes.txt"), "not an image");
        File.WriteAllBytes(Path.Combine(_dir.Path, "empty.png"), []);
        Directory.CreateDirectory(Path.Combine(_dir.Path, "sub"));
        var file = PromptFile("p.csv", $"prompt,init_image\na,ok.png\nb,\nc,{name}\nd,{name}\n");

        Assert.Equal(2, await _cli.RunAsync("submit", file));

        Assert.Equal($"{file}:4: " + string.Format(reason, Path.Combine(_dir.Path, name)), _cli.ErrorLines.Single());
        Assert.Equal(0, _cli.Service.SubmitCalls);
    }

    [Fact]
    public async Task AMaskColumnNeedsAnInitImageFromTheRowOrTheFlag()
    {
        Png("m.png", 100);
        var photo = Png("photo.png", 100, seed: 2);
        var file = PromptFile("p.csv", "prompt,mask\na,m.png\n");

        Assert.Equal(2, await _cli.RunAsync("submit", file));
        Assert.StartsWith($"{file}:2: a mask needs an init image", _cli.ErrorLines.Single());

        var withFlag = new CliHarness();
        Assert.Equal(0, await withFlag.RunAsync("submit", file, "--init-image", photo));
        Assert.Equal(NameOf(photo), withFlag.Service.Submitted.Last().Prompt.InitImage);
    }

    [Fact]
    public async Task AStrengthColumnWithoutAnyInitImageNamesTheLine()
    {
        var file = PromptFile("p.jsonl", "{\"prompt\":\"a\"}\n{\"prompt\":\"b\",\"strength\":0.5}\n");

        Assert.Equal(2, await _cli.RunAsync("submit", file));

        Assert.StartsWith($"{file}:2: 'strength' applies only to prompts with an init image", _cli.ErrorLines.Single());
        Assert.Equal(0, _cli.Service.SubmitCalls);
    }

    [Theory]
    [InlineData("--strength", "0.5")]
    [InlineData("--mask", "MASK")]
    public async Task StrengthOrMaskFlagsWithNoInitImageAnywhereAreRefusedRatherThanIgnored(string option, string value)
    {
        var mask = Png("mask.png", 100);
        var file = PromptFile("p.txt", "a cat\n");

        Assert.Equal(2, await _cli.RunAsync("submit", file, option, value == "MASK" ? mask : value));

        Assert.Contains($"{option} applies only to prompts with an init image", _cli.Error.ToString());
        Assert.Equal(0, _cli.Service.SubmitCalls);
    }

    [Fact]
    public async Task AMissingInitImageFlagIsAUsageErrorNamingTheOption()
    {
        var file = PromptFile("p.txt", "a cat\n");
        var missing = Path.Combine(_dir.Path, "nope.png");

        Assert.Equal(2, await _cli.RunAsync("submit", file, "--init-image", missing));

        Assert.Equal($"error: --init-image {missing}: no such file", _cli.ErrorLines.Single());
        Assert.Equal(0, _cli.Service.SubmitCalls);
    }

    [Fact]
    public async Task SubmitHelpExplainsTheImageFlags()
    {
        Assert.Equal(0, await _cli.RunAsync("submit", "--help"));

        var help = _cli.Out.ToString();
        Assert.Contains("--init-image", help);
        Assert.Contains("--mask", help);
        Assert.Contains("--strength", help);
        Assert.Contains("no init_image of its own", help);
    }
}
