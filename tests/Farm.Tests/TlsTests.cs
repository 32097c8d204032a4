using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Grpc.Net.Client;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;
using RenderFarm.Shared;

namespace RenderFarm.Farm.Tests;

/// <summary>TLS on the coordinator (a Kestrel certificate from configuration) with a worker and a client that trust it.</summary>
public sealed class TlsTests
{
    [Fact]
    public async Task AWorkerAndAClientThatTrustTheCoordinatorsCertificateRenderOverTlsAndOthersAreRefused()
    {
        var pki = Directory.CreateTempSubdirectory("farm-tls-").FullName;
        var (certPath, keyPath) = WriteSelfSignedCertificate(pki);
        await using var farm = await FarmCluster.StartAsync(workers: 0, configure: s =>
        {
            s["Kestrel:Endpoints:Grpc:Url"] = "https://127.0.0.1:0";
            s["Kestrel:Endpoints:Grpc:Certificate:Path"] = certPath;
            s["Kestrel:Endpoints:Grpc:Certificate:KeyPath"] = keyPath;
        });
        Assert.StartsWith("https://", farm.CoordinatorUrl);
        await farm.StartWorkerAsync("tls-worker", s => s["Farm:CoordinatorCaFile"] = certPath);

        using var trusting = GrpcChannel.ForAddress(farm.CoordinatorUrl,
            new GrpcChannelOptions { HttpHandler = CoordinatorTrust.Apply(new SocketsHttpHandler(), certPath) });
        var jobs = new JobService.JobServiceClient(trusting);
        using (var call = jobs.SubmitJob())
        {
            await call.RequestStream.WriteAsync(new SubmitJobRequest
            {
                Header = new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 2 }, Seeds = { 4 } },
            });
            await call.RequestStream.WriteAsync(new SubmitJobRequest { Prompt = new PromptItem { Prompt = "a sealed letter" } });
            await call.RequestStream.CompleteAsync();
            var job = await call;
            var deadline = DateTime.UtcNow.AddMinutes(2);
            JobStatus status;
            do
            {
                await Task.Delay(200);
                status = await jobs.GetJobAsync(new GetJobRequest { JobId = job.JobId });
            } while (status.State != JobState.Completed && DateTime.UtcNow < deadline);
            Assert.Equal(JobState.Completed, status.State); // the worker's results came back over TLS
        }

        // A client that does not trust the certificate cannot talk to the coordinator at all.
        using var untrusting = GrpcChannel.ForAddress(farm.CoordinatorUrl);
        var refused = await Assert.ThrowsAsync<RpcException>(() =>
            new JobService.JobServiceClient(untrusting).ListJobsAsync(new ListJobsRequest()).ResponseAsync);
        Assert.Contains(refused.StatusCode, new[] { StatusCode.Unavailable, StatusCode.Internal });
        Assert.Contains("SSL", refused.Status.Detail + refused.Status.DebugException?.ToString());
        Directory.Delete(pki, recursive: true);
    }

    private static (string Cert, string Key) WriteSelfSignedCertificate(string directory)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=renderfarm-test", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(IPAddress.Loopback);
        names.AddDnsName("localhost");
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        var certPath = Path.Combine(directory, "coordinator.crt");
        var keyPath = Path.Combine(directory, "coordinator.key");
        File.WriteAllText(certPath, certificate.ExportCertificatePem());
        File.WriteAllText(keyPath, key.ExportPkcs8PrivateKeyPem());
        return (certPath, keyPath);
    }
}
