using Google.Protobuf;
using RenderFarm.Protocol;

namespace RenderFarm.Worker.Tests;

public sealed class ResultUploaderTests
{
    private static readonly HttpClient Http = new();

    private static Uri? UrlFor(string uploadUrl, string coordinator, string token = "t") =>
        ResultUploader.For(new Welcome { UploadUrl = uploadUrl, UploadToken = token }, new Uri(coordinator), Http)?.Url;

    [Theory]
    [InlineData("http://*:5002/v1/worker/uploads", "http://coordinator:5000", "http://coordinator:5002/v1/worker/uploads")]
    [InlineData("https://*:5443/v1/worker/uploads", "https://farm.example.com:5001", "https://farm.example.com:5443/v1/worker/uploads")]
    [InlineData("http://*:5002/v1/worker/uploads", "http://[::1]:5000", "http://[::1]:5002/v1/worker/uploads")]
    [InlineData("http://10.1.2.3:5002/v1/worker/uploads", "http://coordinator:5000", "http://10.1.2.3:5002/v1/worker/uploads")]
    public void AStarHostIsTheCoordinatorsAndAnyOtherIsKept(string advertised, string coordinator, string expected) =>
        Assert.Equal(new Uri(expected), UrlFor(advertised, coordinator));

    [Theory]
    [InlineData("", "t")]
    [InlineData("http://*:5002/v1/worker/uploads", "")]
    [InlineData("ftp://*:21/uploads", "t")]
    [InlineData("not a url", "t")]
    public void NoUsableUrlOrNoTokenMeansNoUploads(string advertised, string token) =>
        Assert.Null(UrlFor(advertised, "http://coordinator:5000", token));

    [Fact]
    public void PngBatchesGoByUploadAndLatentsDoNot()
    {
        ShardResults Results(params int[] sizes) => new() { Images = { sizes.Select(n => new ShardImage { Png = ByteString.CopyFrom(new byte[n]) }) } };
        Assert.True(ResultUploader.Worth(Results(60, 40)));
        Assert.True(ResultUploader.Worth(Results(1)));
        Assert.False(ResultUploader.Worth(new ShardResults()));
        var latents = Results(200, 200);
        latents.Images[1] = new ShardImage { Latents = ByteString.CopyFrom(new byte[200]) };
        Assert.False(ResultUploader.Worth(latents));
    }
}
