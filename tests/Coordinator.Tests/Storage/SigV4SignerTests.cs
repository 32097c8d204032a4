using RenderFarm.Coordinator.Storage;

namespace RenderFarm.Coordinator.Tests.Storage;

/// <summary>
/// The signer against the worked examples of the S3 API reference ("Examples: Signature Calculations in AWS Signature
/// Version 4"): neither test server verifies SigV4, so these are what proves real S3 would accept our requests.
/// </summary>
public sealed class SigV4SignerTests
{
    private const string Host = "examplebucket.s3.amazonaws.com";
    private static readonly DateTimeOffset Time = new(2013, 5, 24, 0, 0, 0, TimeSpan.Zero);
    private static readonly SigV4Signer Signer = new("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1");

    [Fact]
    public void GetObjectWithRangeMatchesTheAwsExample()
    {
        var headers = new Dictionary<string, string>
        {
            ["host"] = Host, ["range"] = "bytes=0-9",
            ["x-amz-content-sha256"] = SigV4Signer.EmptyPayloadSha256, ["x-amz-date"] = "20130524T000000Z",
        };
        Assert.Equal(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request," +
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date," +
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
            Signer.Authorization("GET", "/test.txt", "", headers, SigV4Signer.EmptyPayloadSha256, Time));
    }

    [Fact]
    public void PutObjectWithAnEncodedKeyMatchesTheAwsExample()
    {
        const string payload = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"; // "Welcome to Amazon S3."
        var headers = new Dictionary<string, string>
        {
            ["date"] = "Fri, 24 May 2013 00:00:00 GMT", ["host"] = Host, ["x-amz-content-sha256"] = payload,
            ["x-amz-date"] = "20130524T000000Z", ["x-amz-storage-class"] = "REDUCED_REDUNDANCY",
        };
        var authorization = Signer.Authorization("PUT", SigV4Signer.EncodePath("/test$file.text"), "", headers, payload, Time);
        Assert.EndsWith("Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd", authorization);
    }

    [Fact]
    public void PresignedGetMatchesTheAwsExample()
    {
        var query = Signer.PresignQuery("GET", "/test.txt", Host, TimeSpan.FromSeconds(86400), Time);
        Assert.Equal(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request" +
            "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host" +
            "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
            query);
    }

    [Fact]
    public void PresignRefusesALifetimeS3WouldReject()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Signer.PresignQuery("GET", "/k", Host, TimeSpan.FromDays(8), Time));
        Assert.Throws<ArgumentOutOfRangeException>(() => Signer.PresignQuery("GET", "/k", Host, TimeSpan.Zero, Time));
    }

    [Fact]
    public void PathsAreEncodedPerSegmentKeepingSlashes() =>
        Assert.Equal("/bucket/a%20b/%C3%A9t%C3%A9/x~y_z-1.png", SigV4Signer.EncodePath("/bucket/a b/été/x~y_z-1.png"));

    [Fact]
    public void TheSignerNeverPrintsItsSecret() =>
        Assert.DoesNotContain("wJalrXUtnFEMI", Signer.ToString());
}
