using RenderFarm.Client.Pull;

namespace RenderFarm.Client.Tests.Pull;

public class ResultFileNamerTests
{
    [Fact]
    public void NameIsPaddedIndexSeedAndSlug() =>
        Assert.Equal("00007-12345-a-cat-in-a-hat.png", ResultFileNamer.FileName(7, 12345, "A Cat, in a HAT!"));

    [Fact]
    public void IndexesPastFiveDigitsKeepAllDigits() =>
        Assert.StartsWith("123456-1-", ResultFileNamer.FileName(123456, 1, "x"));

    [Fact]
    public void SlugFoldsAccentsAndDropsOtherScripts()
    {
        Assert.Equal("cafe-creme", ResultFileNamer.Slug("Café   crème"));
        Assert.Equal("image", ResultFileNamer.Slug("日本の猫"));
        Assert.Equal("image", ResultFileNamer.Slug("   "));
    }

    [Fact]
    public void SlugIsCutAtAWordEndWithinTheLimit()
    {
        var slug = ResultFileNamer.Slug("masterpiece, best quality, a highly detailed portrait of an astronaut riding a horse");

        Assert.True(slug.Length <= ResultFileNamer.MaxSlugLength, slug);
        Assert.Equal("masterpiece-best-quality-a-highly", slug);
    }

    [Fact]
    public void SingleGiantWordIsHardCut() =>
        Assert.Equal(new string('a', ResultFileNamer.MaxSlugLength), ResultFileNamer.Slug(new string('a', 100)));

    [Theory]
    [InlineData("../../etc/passwd")]
    [InlineData("..\\..\\windows\\system32\\config")]
    [InlineData("/absolute/path")]
    [InlineData("C:\\Users\\x")]
    [InlineData("con")]
    [InlineData("a\0b")]
    [InlineData("....")]
    [InlineData("~/.ssh/authorized_keys")]
    public void PromptTextCanNeverLeaveTheOutputFolder(string prompt)
    {
        var name = ResultFileNamer.FileName(3, 9, prompt);
        var folder = Path.GetFullPath(Path.Combine(Path.GetTempPath(), "out"));
        var full = Path.GetFullPath(Path.Combine(folder, name));

        Assert.Equal(folder, Path.GetDirectoryName(full));
        Assert.Equal(name, Path.GetFileName(name));
        Assert.True(ResultFileNamer.IsSafeFileName(name), name);
        Assert.DoesNotContain("..", name);
    }

    [Theory]
    [InlineData("../x.png")]
    [InlineData("sub/x.png")]
    [InlineData(".hidden.png")]
    [InlineData("x.exe")]
    [InlineData("")]
    public void ManifestFileNamesThatAreNotOursAreNotTrusted(string name) =>
        Assert.False(ResultFileNamer.IsSafeFileName(name));
}
