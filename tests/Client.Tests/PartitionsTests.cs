namespace RenderFarm.Client.Tests;

public class PartitionsTests
{
    [Fact]
    public void EachPartitionSkipsEverythingButItsOwnMissingImages()
    {
        var partitions = Partitions.For(imageCount: 10, present: [1, 9], wanted: 3);
        var handled = new HashSet<uint> { 4 };

        var asked = Enumerable.Range(0, partitions.Count)
            .Select(p => Enumerable.Range(0, 10).Select(i => (uint)i).Except(partitions.Skip(p, handled)).ToArray())
            .ToArray();

        Assert.Equal([[0u, 3u, 6u], [7u], [2u, 5u, 8u]], asked);
    }

    [Fact]
    public void AnUnknownImageCountMeansOneStreamThatSkipsWhatIsPresentAndHandled()
    {
        var partitions = Partitions.For(imageCount: 0, present: [3], wanted: 8);

        Assert.Equal(1, partitions.Count);
        Assert.Equal([3u, 7u], partitions.Skip(0, new HashSet<uint> { 7, 3 }).Order());
    }

    [Fact]
    public void NeverMorePartitionsThanImagesAndIndicesPastTheCountAreSkippedByEveryStream()
    {
        var partitions = Partitions.For(imageCount: 2, present: [], wanted: 8);

        Assert.Equal(2, partitions.Count);
        Assert.Equal([1u, 20u], partitions.Skip(0, new HashSet<uint> { 20 }));
    }
}
