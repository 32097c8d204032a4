using RenderFarm.Client.Pull;

namespace RenderFarm.Client.Tests.Pull;

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

    [Fact]
    public void ARequestNamesItsPartitionAndSkipsOnlyWhatThePullHasOfIt()
    {
        var partitions = Partitions.For(imageCount: 10, present: [1, 9], wanted: 3);
        var handled = new HashSet<uint> { 4, 13 }; // 13: past the count, partition 13 % 3 = 1

        var requests = Enumerable.Range(0, 3).Select(p => partitions.Request("J", p, handled, presignedUrls: true)).ToArray();

        Assert.All(requests, r => Assert.Equal((3u, "J", true), (r.PartitionCount, r.JobId, r.PresignedUrls)));
        Assert.Equal([0u, 1u, 2u], requests.Select(r => r.Partition));
        Assert.Equal([[9u], [1u, 4u, 13u], []], requests.Select(r => r.SkipIndices.ToArray()));
        // For a coordinator without partitions: the same streams as skip lists alone.
        Assert.Equal(partitions.Skip(1, handled), partitions.LegacyRequest("J", 1, handled, presignedUrls: true).SkipIndices);
        Assert.Equal(0u, partitions.LegacyRequest("J", 1, handled, presignedUrls: true).PartitionCount);
    }

    [Fact]
    public void OneStreamAsksForEverythingNotHadWithoutPartitionFields()
    {
        var request = Partitions.For(imageCount: 5, present: [2], wanted: 1).Request("J", 0, new HashSet<uint> { 0 }, presignedUrls: false);

        Assert.Equal(0u, request.PartitionCount);
        Assert.Equal([0u, 2u], request.SkipIndices);
    }
}
