using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace RenderFarm.Shared;

/// <summary>
/// TLS to the coordinator. https:// addresses are verified against the system's trust store, plus — when given — the
/// CA certificates of a PEM file (a private CA, or the coordinator's self-signed certificate), so a farm on an internal
/// CA needs no change to the machines' trust stores. Verification is never switched off.
/// </summary>
public static class CoordinatorTrust
{
    public static SocketsHttpHandler Apply(SocketsHttpHandler handler, string? caFile)
    {
        if (string.IsNullOrWhiteSpace(caFile)) return handler;
        if (!File.Exists(caFile)) throw new FileNotFoundException($"CA file '{caFile}' does not exist", caFile);
        var roots = new X509Certificate2Collection();
        roots.ImportFromPemFile(caFile);
        if (roots.Count == 0) throw new InvalidDataException($"CA file '{caFile}' holds no PEM certificate");

        handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
        {
            if (errors == SslPolicyErrors.None) return true;                 // trusted by the system already
            if (certificate is null || errors.HasFlag(SslPolicyErrors.RemoteCertificateNameMismatch)) return false;
            using var chain = new X509Chain();
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.AddRange(roots);
            chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;  // private CAs rarely publish CRLs
            return chain.Build(new X509Certificate2(certificate));
        };
        return handler;
    }
}
