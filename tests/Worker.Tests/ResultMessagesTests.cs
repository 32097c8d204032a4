using Google.Protobuf;
using RenderFarm.Protocol;

namespace RenderFarm.Worker.Tests;

public sealed class ResultMessagesTests
{
    private static readonly ShardRef Shard = new() { JobId = "job", ShardIndex = 3, Model = "m", EntryId = "1-0", Stream = "tasks:m", Delivery = 2 };

    private static ShardImage Image(uint index, int bytes) => new() { Index = index, Png = ByteString.CopyFrom(new byte[bytes]), RenderSeconds = 0.5 };

    [Fact]
    public void ABatchsImagesGoInOrderInAsFewMessagesAsStayUnderTheByteLimit()
    {
        var quarter = ResultMessages.MaxBytes / 4;
        var images = Enumerable.Range(0, 10).Select(i => Image((uint)i, quarter)).ToList();

        var messages = ResultMessages.Batched(Shard, images).ToList();

        Assert.Equal([4, 4, 2], messages.Select(m => m.Results.Images.Count));
        Assert.All(messages, m => Assert.Equal(Shard, m.Results.Shard));
        Assert.All(messages, m => Assert.True(m.Results.Images.Sum(i => i.Png.Length) <= ResultMessages.MaxBytes));
        Assert.Equal(Enumerable.Range(0, 10).Select(i => (uint)i), messages.SelectMany(m => m.Results.Images).Select(i => i.Index));
    }

    [Fact]
    public void AnImageLargerThanTheLimitStillGoesAloneInItsOwnMessage()
    {
        var messages = ResultMessages.Batched(Shard, [Image(0, 10), Image(1, ResultMessages.MaxBytes + 1), Image(2, 10)]).ToList();

        Assert.Equal([[0u], [1u], [2u]], messages.Select(m => m.Results.Images.Select(i => i.Index).ToArray()));
    }

    [Fact]
    public void ForACoordinatorWithoutBatchesABatchBecomesOneImageMessageEachNamingTheShard()
    {
        var batch = ResultMessages.Batched(Shard, [Image(7, 5), Image(9, 6)]).Single().Results;

        var single = ResultMessages.OneByOne(batch).ToList();

        Assert.Equal([(7u, 5), (9u, 6)], single.Select(m => (m.Image.Index, m.Image.Png.Length)));
        Assert.All(single, m => Assert.Equal((Shard, 0.5), (m.Image.Shard, m.Image.RenderSeconds)));
        Assert.All(batch.Images, i => Assert.Null(i.Shard)); // the batch itself is left as it was
    }
}
