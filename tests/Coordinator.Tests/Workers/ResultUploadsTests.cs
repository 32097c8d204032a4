using RenderFarm.Coordinator.Workers;

namespace RenderFarm.Coordinator.Tests.Workers;

public sealed class ResultUploadsTests
{
    [Fact]
    public void EachStreamHasItsOwnSecretTokenThatFindsOnlyItsInboxUntilItCloses()
    {
        var uploads = new ResultUploads();
        var first = uploads.Open();
        using var second = uploads.Open();
        Assert.NotEqual(first.Token, second.Token);
        Assert.True(first.Token.Length >= 43, first.Token); // 256 random bits
        Assert.Same(first, uploads.Find(first.Token));
        Assert.Same(second, uploads.Find(second.Token));
        Assert.Null(uploads.Find("guess"));
        first.Dispose();
        Assert.Null(uploads.Find(first.Token));
        Assert.Same(second, uploads.Find(second.Token));
    }

    [Fact]
    public void AnUploadIsTakenOnceAndItsBytesCountAgainstItsStreamUntilThen()
    {
        using var inbox = new ResultUploads().Open();
        Assert.True(inbox.TryReserve(ResultUploads.MaxStagedBytes - 10));
        Assert.False(inbox.TryReserve(11));
        var id = inbox.Add(StagedUpload.Rent((int)(ResultUploads.MaxStagedBytes - 10)))!;
        Assert.False(inbox.TryReserve(11));
        Assert.True(inbox.TryReserve(10));
        inbox.Release(10);

        using (var taken = inbox.Take(id)) Assert.Equal(ResultUploads.MaxStagedBytes - 10, taken!.Length);
        Assert.Null(inbox.Take(id));
        Assert.True(inbox.TryReserve(ResultUploads.MaxStagedBytes));
    }

    [Fact]
    public void AClosedInboxTakesNoMoreUploads()
    {
        var inbox = new ResultUploads().Open();
        Assert.True(inbox.TryReserve(4));
        var held = inbox.Add(StagedUpload.Rent(4))!;
        Assert.True(inbox.TryReserve(4));
        inbox.Dispose();
        Assert.Null(inbox.Take(held)); // dropped with the stream
        Assert.Null(inbox.Add(StagedUpload.Rent(4)));
        Assert.False(inbox.TryReserve(1));
    }
}
