using Google.Protobuf;
using RenderFarm.Coordinator.Jobs;
using RenderFarm.Coordinator.Workers;
using RenderFarm.Protocol;

namespace RenderFarm.Coordinator.Tests.Jobs;

public sealed class UploadedResultsTests
{
    private static StagedUpload Upload(byte[] body)
    {
        var upload = StagedUpload.Rent(body.Length);
        body.CopyTo(upload.Memory);
        return upload;
    }

    private static ShardResults Results(string upload, params uint[] sizes) =>
        new() { Upload = upload, Images = { sizes.Select((size, i) => new ShardImage { Index = (uint)i, UploadedBytes = size }) } };

    [Fact]
    public void EachImageGetsTheNextOfTheUploadsBytesInOrder()
    {
        using var upload = Upload([1, 2, 3, 4, 5, 6]);
        var results = Results("1", 1, 3, 2);
        Assert.Null(UploadedResults.Attach(results, upload));
        Assert.Equal([[1], [2, 3, 4], [5, 6]], results.Images.Select(i => i.Png.ToByteArray()));
    }

    [Theory]
    [InlineData(new uint[] { 1, 2 }, "gives its images 3 bytes of an upload of 4")]
    [InlineData(new uint[] { 4, 1 }, "gives its images 5 bytes of an upload of 4")]
    [InlineData(new uint[0], "gives its images 0 bytes of an upload of 4")]
    public void SizesThatDoNotAddUpToTheUploadAttachNothing(uint[] sizes, string problem)
    {
        using var upload = Upload([1, 2, 3, 4]);
        var results = Results("1", sizes);
        Assert.Equal(problem, UploadedResults.Attach(results, upload));
        Assert.All(results.Images, i => Assert.True(i.Png.IsEmpty));
    }

    [Fact]
    public void AMessageThatAlsoCarriesBytesOrNamesNoUploadOfItsStreamIsRefused()
    {
        using var upload = Upload([1, 2]);
        var withPng = Results("1", 1, 1);
        withPng.Images[1].Png = ByteString.CopyFrom(9);
        Assert.Equal("carries PNGs or latents as well as naming an upload", UploadedResults.Attach(withPng, upload));
        var withLatents = Results("1", 2);
        withLatents.Images[0].Latents = ByteString.CopyFrom(9);
        Assert.Equal("carries PNGs or latents as well as naming an upload", UploadedResults.Attach(withLatents, upload));
        Assert.Equal("names upload '7', which its stream did not make or named already", UploadedResults.Attach(Results("7", 2), null));
    }
}
