using RenderFarm.Client.Cli;
using RenderFarm.Client.Prompts;
using RenderFarm.Client.Submit;

namespace RenderFarm.Client.Tests.Submit;

public class SeedPlanTests
{
    private static long NoRandom() => throw new InvalidOperationException("no random seed expected");

    [Fact]
    public void ExplicitSeedListIsUsedAsGiven()
    {
        var plan = SeedPlan.Create(null, [5, 1, 9], null, NoRandom);

        Assert.Equal([5L, 1L, 9L], plan.Seeds);
        Assert.False(plan.IsRandom);
    }

    [Fact]
    public void SeedWithCountExpandsToConsecutiveSeeds()
    {
        var plan = SeedPlan.Create(10, null, 4, NoRandom);

        Assert.Equal([10L, 11L, 12L, 13L], plan.Seeds);
        Assert.Equal("10..13 (4 seeds)", plan.Describe());
    }

    [Fact]
    public void SeedAloneIsOneSeed() => Assert.Equal([42L], SeedPlan.Create(42, null, null, NoRandom).Seeds);

    [Fact]
    public void NoSeedOptionsPicksOneRandomSeedAndSaysSo()
    {
        var plan = SeedPlan.Create(null, null, null, () => 31337);

        Assert.Equal([31337L], plan.Seeds);
        Assert.True(plan.IsRandom);
    }

    [Fact]
    public void SeedCountAloneStartsFromARandomSeed()
    {
        var plan = SeedPlan.Create(null, null, 3, () => 100);

        Assert.Equal([100L, 101L, 102L], plan.Seeds);
        Assert.True(plan.IsRandom);
    }

    [Fact]
    public void RandomSeedsStayInTheUnsigned32BitRange()
    {
        for (var i = 0; i < 1000; i++)
        {
            Assert.InRange(SeedPlan.NewRandomSeed(), 0, uint.MaxValue);
        }
    }

    [Theory]
    [InlineData(1L, true, null, "either --seed or --seeds")]
    [InlineData(null, true, 2, "--seed-count goes with --seed")]
    [InlineData(1L, false, 0, "between 1 and")]
    [InlineData(-5L, false, null, "non-negative")]
    [InlineData(long.MaxValue, false, 2, "runs past the largest seed")]
    public void ConflictingOrOutOfRangeSeedOptionsAreUsageErrors(long? seed, bool withList, int? count, string reason)
    {
        var error = Assert.Throws<CliUsageException>(() => SeedPlan.Create(seed, withList ? [1, 2] : null, count, () => 1));
        Assert.Contains(reason, error.Message);
    }

    [Fact]
    public void SeedListParsingAcceptsSpacesAndRejectsJunk()
    {
        Assert.Equal([1L, 2L, 3L], SeedPlan.ParseList("1, 2 ,3"));
        Assert.Contains("'x'", Assert.Throws<FormatException>(() => SeedPlan.ParseList("1,x")).Message);
        Assert.Contains("empty item", Assert.Throws<FormatException>(() => SeedPlan.ParseList("1,,2")).Message);
        Assert.Throws<FormatException>(() => SeedPlan.ParseList("-3"));
    }

    [Fact]
    public void ImageCountIsSeedsTimesImagesPerPromptUsingThePromptsOwnSeedsWhenGiven()
    {
        var plan = SeedPlan.Create(null, [1, 2, 3], null, NoRandom);

        Assert.Equal(6, plan.ImagesFor(new PromptEntry(1, "a"), 2));
        Assert.Equal(2, plan.ImagesFor(new PromptEntry(1, "a", Seeds: [7]), 2));
        Assert.Equal(3, plan.ImagesFor(new PromptEntry(1, "a"), 0)); // 0 means 1, as in the contract
    }
}
