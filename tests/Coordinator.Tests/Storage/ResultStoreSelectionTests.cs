using Microsoft.Extensions.Logging.Abstractions;
using RenderFarm.Coordinator.Storage;

namespace RenderFarm.Coordinator.Tests.Storage;

public sealed class ResultStoreSelectionTests
{
    [Fact]
    public void ADirectoryKeepsTheFileSystemStore()
    {
        var directory = Path.Combine(Path.GetTempPath(), $"farm-results-{Guid.NewGuid():N}");
        try
        {
            var store = ResultStores.Create(new CoordinatorOptions { Storage = directory }, NullLoggerFactory.Instance);
            Assert.Equal(directory, Assert.IsType<FileSystemResultStore>(store).Root);
            Assert.False(store.CanPresign);
        }
        finally
        {
            if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true); // the store creates it
        }
    }

    [Fact]
    public void AnS3UrlSelectsTheS3StoreWithBucketPrefixAndEndpoint()
    {
        var options = new CoordinatorOptions
        {
            Storage = "s3://renders/farm/prod/",
            S3 = new S3StorageOptions { Endpoint = "http://127.0.0.1:9000", AccessKey = "key", SecretKey = "secret", UsePathStyle = true },
        };
        using var store = Assert.IsType<S3ResultStore>(ResultStores.Create(options, NullLoggerFactory.Instance));
        Assert.Equal(new S3Location("renders", "farm/prod"), store.Location);
        Assert.Equal("farm/prod/job-1/000042.png", store.KeyOf("job-1", 42));
        Assert.True(store.CanPresign);
    }

    [Theory]
    [InlineData("s3://renders", "renders", "")]
    [InlineData("s3://my.bucket-1/a/b", "my.bucket-1", "a/b")]
    [InlineData("S3://renders//", "renders", "")]
    public void S3UrlsParseIntoBucketAndPrefix(string url, string bucket, string prefix) =>
        Assert.Equal(new S3Location(bucket, prefix), S3Location.Parse(url));

    [Theory]
    [InlineData("s3://")]
    [InlineData("s3://UpperCase/x")]
    [InlineData("s3://ab")]
    [InlineData("s3://renders/a/../b")]
    [InlineData("s3://renders/a//b")]
    public void MalformedS3UrlsAreRejectedNamingTheSetting(string url) =>
        Assert.Contains("Farm:Storage", Assert.Throws<FormatException>(() => S3Location.Parse(url)).Message);

    [Fact]
    public void MissingCredentialsNameTheSettingToSet()
    {
        if (Environment.GetEnvironmentVariable("AWS_ACCESS_KEY_ID") is not null) return; // the fallback would supply them
        var options = new CoordinatorOptions { Storage = "s3://renders", S3 = new S3StorageOptions { Endpoint = "http://127.0.0.1:9000" } };
        var error = Assert.Throws<InvalidOperationException>(() => ResultStores.Create(options, NullLoggerFactory.Instance));
        Assert.Contains("Farm:S3:AccessKey", error.Message);
    }

    [Fact]
    public void OptionsPrintWithoutTheSecretKey()
    {
        var options = new S3StorageOptions { Endpoint = "http://s3.local", AccessKey = "AKIDVISIBLE", SecretKey = "very-secret-value" };
        Assert.Contains("AKIDVISIBLE", options.ToString());
        Assert.DoesNotContain("very-secret-value", options.ToString());
    }
}
