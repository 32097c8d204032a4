using System.Web;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using RenderFarm.Coordinator.Storage;

namespace RenderFarm.Coordinator.Tests.Storage;

/// <summary>
/// The store's own SigV4 presigning: exactly AWS's published example, and the same URL as AWSSDK.S3 signs for the same
/// request at the same second, for the requests the store makes (GET, and PUT with its signed headers), path-style and
/// virtual-hosted, with a session token and with keys that need escaping.
/// </summary>
public sealed class S3UrlSignerTests
{
    [Fact]
    public void SignsAwssPublishedQueryStringExampleExactly()
    {
        // "Authenticating Requests: Using Query Parameters (AWS Signature Version 4)", Amazon S3 API reference.
        var signer = new S3UrlSigner("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", null, "us-east-1");

        var url = signer.Presign("GET", "https://examplebucket.s3.amazonaws.com/test.txt", [],
            new DateTimeOffset(2013, 5, 24, 0, 0, 0, TimeSpan.Zero), TimeSpan.FromSeconds(86400));

        Assert.Equal("https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256" +
            "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z" +
            "&X-Amz-Expires=86400&X-Amz-SignedHeaders=host" +
            "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404", url);
    }

    public static TheoryData<string?, bool, string?, string, string> Requests() => new()
    {
        // endpoint (null: AWS), path style, session token, method, key
        { "http://127.0.0.1:9000", true, null, "PUT", "renders/job1/000003.png" },
        { "http://127.0.0.1:9000", true, null, "GET", "renders/job1/000003.png" },
        { "https://minio.example.com", true, "session-token/with+odd=chars", "PUT", "a b/c+d/€uro/000001.png" },
        { null, false, null, "PUT", "renders/job1/000003.png" },
        { null, false, "FwoGZXIvYXdzEBYaDH", "GET", "x/y.png" },
    };

    [Theory, MemberData(nameof(Requests))]
    public void GivesTheSameUrlAsTheSdkForTheSameRequestAndSecond(string? endpoint, bool pathStyle, string? token, string method, string key)
    {
        const string bucket = "farm-results";
        AWSCredentials credentials = token is null ? new BasicAWSCredentials("AKIDEXAMPLE", "secret/Key+1") : new SessionAWSCredentials("AKIDEXAMPLE", "secret/Key+1", token);
        var config = new AmazonS3Config { ForcePathStyle = pathStyle, RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED };
        if (endpoint is null) config.RegionEndpoint = Amazon.RegionEndpoint.EUWest1;
        else { config.ServiceURL = endpoint; config.AuthenticationRegion = "eu-west-1"; }
        using var s3 = new AmazonS3Client(credentials, config);
        var request = new GetPreSignedUrlRequest
        {
            BucketName = bucket, Key = key, Verb = method == "PUT" ? HttpVerb.PUT : HttpVerb.GET, Expires = DateTime.UtcNow.AddMinutes(15),
            Protocol = endpoint?.StartsWith("http:") == true ? Amazon.S3.Protocol.HTTP : Amazon.S3.Protocol.HTTPS,
        };
        (string, string)[] headers = [];
        if (method == "PUT")
        {
            request.ContentType = "image/png";
            request.Headers["x-amz-checksum-sha256"] = "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=";
            request.Headers["If-None-Match"] = "*";
            request.Headers["Content-Length"] = "4242";
            request.Metadata["x-amz-meta-sha256"] = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
            headers = [("Content-Type", "image/png"), ("x-amz-checksum-sha256", "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="), ("If-None-Match", "*"),
                ("Content-Length", "4242"), ("x-amz-meta-sha256", "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")];
        }
        var sdk = s3.GetPreSignedURL(request);
        var sdkQuery = HttpUtility.ParseQueryString(new Uri(sdk).Query);
        var at = DateTimeOffset.ParseExact(sdkQuery["X-Amz-Date"]!, "yyyyMMdd'T'HHmmss'Z'", System.Globalization.CultureInfo.InvariantCulture,
            System.Globalization.DateTimeStyles.AssumeUniversal);
        var objectUrl = sdk[..sdk.IndexOf('?')];

        var ours = new S3UrlSigner("AKIDEXAMPLE", "secret/Key+1", token, "eu-west-1")
            .Presign(method, objectUrl, headers, at, TimeSpan.FromSeconds(int.Parse(sdkQuery["X-Amz-Expires"]!)));

        Assert.Equal(objectUrl, ours[..ours.IndexOf('?')]);
        var oursQuery = HttpUtility.ParseQueryString(new Uri(ours).Query);
        Assert.Equal(sdkQuery.AllKeys.Order(), oursQuery.AllKeys.Order());
        foreach (var name in sdkQuery.AllKeys) Assert.Equal(sdkQuery[name], oursQuery[name]);
        // The store builds object URLs the way the SDK does: its resolved base and the key escaped the same.
        Assert.EndsWith("/" + S3UrlSigner.EncodeKey(key), objectUrl);
    }
}
