using Google.Protobuf;
using RenderFarm.Coordinator.Workers;
using RenderFarm.Protocol;

namespace RenderFarm.Coordinator.Tests.Workers;

public sealed class UploadGrantsTests
{
    private static ResultDigest Digest(uint index, byte fill = 1) =>
        new() { Index = index, Sha256 = ByteString.CopyFrom(Enumerable.Repeat(fill, 32).ToArray()), SizeBytes = 1000 + index };

    [Fact]
    public void AGrantCountsOnceAndOnlyForTheDigestGranted()
    {
        var grants = new UploadGrants();
        grants.Grant("job", Digest(1));
        grants.Grant("job", Digest(2));

        Assert.False(grants.Redeem("job", Digest(1, fill: 9)));  // other bytes: refused, and the grant is gone
        Assert.False(grants.Redeem("job", Digest(1)));
        Assert.False(grants.Redeem("other-job", Digest(2)));
        Assert.True(grants.Redeem("job", Digest(2)));
        Assert.False(grants.Redeem("job", Digest(2)));            // once
    }

    [Fact]
    public void PastCapacityTheOldestOutstandingGrantGoesNotOneRedeemedOrAskedForAgain()
    {
        var grants = new UploadGrants();
        // A grant redeemed long ago and then asked for again, behind the oldest outstanding one in line.
        grants.Grant("job", Digest(0));
        Assert.True(grants.Redeem("job", Digest(0)));
        for (var i = 1u; i < UploadGrants.Capacity; i++) grants.Grant("job", Digest(i));
        grants.Grant("job", Digest(0));
        grants.Grant("job", Digest(1, fill: 7)); // asked again with another digest: keeps its place in line

        grants.Grant("job", Digest(UploadGrants.Capacity)); // one past capacity: the oldest outstanding, image 1, goes

        Assert.False(grants.Redeem("job", Digest(1, fill: 7)));
        Assert.True(grants.Redeem("job", Digest(0)));
        Assert.True(grants.Redeem("job", Digest(2)));
        Assert.True(grants.Redeem("job", Digest(UploadGrants.Capacity)));
    }

    [Fact]
    public void ARedeemedGrantNamesEveryDigestTheStreamWasGrantedForTheImageNewestFirst()
    {
        var grants = new UploadGrants();
        for (byte fill = 1; fill <= UploadGrants.EarlierKept + 2; fill++) grants.Grant("job", Digest(1, fill)); // asked again and again
        grants.Grant("job", Digest(2));

        // What a found-stored upload is checked against: bytes PUT through any of them are this stream's doing.
        Assert.True(grants.Redeem("job", Digest(1, fill: UploadGrants.EarlierKept + 2), out var granted));
        Assert.Equal(Enumerable.Range(2, UploadGrants.EarlierKept + 1).Reverse().Select(f => Digest(1, (byte)f).Sha256), granted);
        Assert.False(grants.Redeem("job", Digest(2, fill: 9), out granted)); // refused, but it was this stream's grant
        Assert.Equal([Digest(2).Sha256], granted);
        Assert.False(grants.Redeem("job", Digest(3), out granted));         // never granted
        Assert.Empty(granted);
    }

    [Fact]
    public void AnImageAskedForAgainWithTheSameDigestKeepsItsEarlierOtherDigests()
    {
        var grants = new UploadGrants();
        // Three distinct digests, then the last one asked for again and again (a worker retrying its request), then the
        // first one again: each is remembered once, and none is pushed out by the repeats.
        grants.Grant("job", Digest(1, fill: 1));
        grants.Grant("job", Digest(1, fill: 2));
        for (var i = 0; i < UploadGrants.EarlierKept + 2; i++) grants.Grant("job", Digest(1, fill: 3));
        Assert.True(grants.Redeem("job", Digest(1, fill: 3), out var granted));
        Assert.Equal([Digest(1, 3).Sha256, Digest(1, 2).Sha256, Digest(1, 1).Sha256], granted);

        grants.Grant("job", Digest(1, fill: 1));
        grants.Grant("job", Digest(1, fill: 2));
        grants.Grant("job", Digest(1, fill: 1));
        Assert.True(grants.Redeem("job", Digest(1, fill: 1), out granted));
        Assert.Equal([Digest(1, 1).Sha256, Digest(1, 2).Sha256], granted);
    }
}
