using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.RegularExpressions;
using Grpc.Core;
using Grpc.Net.Client;
using Grpc.Reflection.V1Alpha;
using RenderFarm.Coordinator.Security;
using RenderFarm.Farm.Tests.Infrastructure;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// What a script in another language relies on, over plain HTTP/1.1 as curl or Python's requests speak it: the
/// OpenAPI document of the JSON routes, a batch posted, its events read to the end, its images listed and each PNG
/// fetched; and for gRPC tools (grpcurl), server reflection, which only admin keys may use.
/// </summary>
public sealed class HttpScriptingTests(WebFarm fixture) : IClassFixture<WebFarm>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(2);

    [Fact]
    public async Task A_script_posts_a_batch_reads_its_events_to_the_end_and_fetches_each_png_along_routes_the_openapi_document_describes()
    {
        var key = await fixture.KeyAsync("script-corp", ApiKeyRole.Client);
        var stranger = await fixture.KeyAsync("script-other-corp", ApiKeyRole.Client);
        using var http = new HttpClient { BaseAddress = new Uri(fixture.Web), Timeout = Timeout }; // HTTP/1.1, as curl

        // The document a script's author (or a client generator) starts from: every route used below is in it.
        using var openApi = JsonDocument.Parse(await http.GetStringAsync("/openapi/v1.json"));
        var paths = openApi.RootElement.GetProperty("paths").EnumerateObject().ToDictionary(p => Regex.Replace(p.Name, "{[^}]+}", "{}"), p => p.Value);
        foreach (var (route, verb) in new[] { ("/v1/jobs", "post"), ("/v1/jobs/{}", "get"), ("/v1/jobs/{}/events", "get"),
                     ("/v1/jobs/{}/images", "get"), ("/v1/jobs/{}/images/{}", "get"), ("/v1/jobs/{}:cancel", "post") })
            Assert.True(paths.TryGetValue(route, out var item) && item.TryGetProperty(verb, out _), $"OpenAPI has no {verb} {route}");

        using var posted = await http.SendAsync(Request(HttpMethod.Post, "/v1/jobs", key, JsonContent.Create(new
        {
            header = new { @params = new { width = 64, height = 64, steps = 2 }, seeds = new[] { 11 } },
            prompts = new[] { new { prompt = "a scripted lighthouse" }, new { prompt = "a scripted harbour" } },
        })));
        posted.EnsureSuccessStatusCode();
        var jobId = (await posted.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("jobId").GetString()!;

        // WatchJob over HTTP ends with the job: reading the body to its end is waiting for the job.
        using (var events = await http.SendAsync(Request(HttpMethod.Get, $"/v1/jobs/{jobId}/events", key), HttpCompletionOption.ResponseHeadersRead))
        {
            var lines = (await events.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
            var final = JsonDocument.Parse(lines[^1]).RootElement.GetProperty("jobFinished");
            Assert.Equal("JOB_STATE_COMPLETED", final.GetProperty("state").GetString());
            Assert.True(final.GetProperty("deviceSeconds").GetDouble() > 0, lines[^1]);
        }

        using var listed = await http.SendAsync(Request(HttpMethod.Get, $"/v1/jobs/{jobId}/images?limit=10", key));
        listed.EnsureSuccessStatusCode();
        var images = (await listed.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("images").EnumerateArray().ToList();
        Assert.Equal(["a scripted lighthouse", "a scripted harbour"], images.Select(i => i.GetProperty("prompt").GetString()));
        foreach (var index in images.Select(i => i.TryGetProperty("index", out var n) ? n.GetInt32() : 0)) // index 0 is left out of protobuf JSON
        {
            using var png = await http.SendAsync(Request(HttpMethod.Get, $"/v1/jobs/{jobId}/images/{index}", key));
            png.EnsureSuccessStatusCode();
            Assert.Equal("image/png", png.Content.Headers.ContentType?.MediaType);
            var bytes = await png.Content.ReadAsByteArrayAsync();
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A }, bytes[..8]); // PNG signature
            Assert.Equal((64, 64), (ReadBigEndian(bytes, 16), ReadBigEndian(bytes, 20))); // IHDR width, height
        }

        // Same authentication as gRPC: no key is 401, another tenant does not find the job or its images.
        using (var anonymous = await http.SendAsync(Request(HttpMethod.Get, $"/v1/jobs/{jobId}/images/0", key: null)))
            Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        using (var other = await http.SendAsync(Request(HttpMethod.Get, $"/v1/jobs/{jobId}/images/0", stranger)))
            Assert.Equal(HttpStatusCode.NotFound, other.StatusCode);
    }

    [Fact]
    public async Task Every_answer_to_an_api_call_forbids_caches_to_store_it_while_the_dashboards_files_are_revalidated()
    {
        var key = await fixture.KeyAsync("cache-corp", ApiKeyRole.Client);
        var headers = new Metadata { { ApiKeyInterceptor.Header, key } };
        var job = await fixture.Farm.SubmitAsync(new RenderFarm.Protocol.JobHeader
        {
            Params = new RenderFarm.Protocol.GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7f }, Seeds = { 5 },
        }, [new RenderFarm.Protocol.PromptItem { Prompt = "a cached lighthouse" }], headers: headers);
        await fixture.Farm.WatchToEndAsync(job.JobId, Timeout, headers);
        using var http = new HttpClient { BaseAddress = new Uri(fixture.Web), Timeout = Timeout };

        // A shared cache keys on the URL, not on x-api-key: stored, one tenant's answer would be served to the next asker.
        foreach (var path in new[] { "/v1/jobs", "/v1/caller", $"/v1/jobs/{job.JobId}", $"/v1/jobs/{job.JobId}/images", $"/v1/jobs/{job.JobId}/images/0" })
        {
            using var answer = await http.SendAsync(Request(HttpMethod.Get, path, key));
            answer.EnsureSuccessStatusCode();
            Assert.True(answer.Headers.CacheControl?.NoStore == true, $"{path}: Cache-Control {answer.Headers.CacheControl}");
        }
        using (var refused = await http.SendAsync(Request(HttpMethod.Get, "/v1/jobs", key: null)))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
            Assert.True(refused.Headers.CacheControl?.NoStore == true, $"refusal: Cache-Control {refused.Headers.CacheControl}");
        }

        // The page and its files are the same for everyone: kept, and revalidated by their ETags.
        using var page = await http.GetAsync("/");
        page.EnsureSuccessStatusCode();
        Assert.True(page.Headers.CacheControl is { NoCache: true, NoStore: false }, $"page: Cache-Control {page.Headers.CacheControl}");
    }

    [Fact]
    public async Task Grpc_reflection_lists_and_describes_the_farms_services_for_an_admin_key_and_refuses_other_callers()
    {
        var admin = await fixture.KeyAsync("reflect-admin", ApiKeyRole.Admin);
        var client = await fixture.KeyAsync("reflect-corp", ApiKeyRole.Client);
        using var channel = GrpcChannel.ForAddress(fixture.Farm.CoordinatorUrl);
        var reflection = new ServerReflection.ServerReflectionClient(channel);

        // What `grpcurl list` and `grpcurl describe renderfarm.v1.JobService` ask.
        var listed = await AskAsync(reflection, admin, new ServerReflectionRequest { ListServices = "" });
        var services = listed.ListServicesResponse.Service.Select(s => s.Name).ToList();
        Assert.Contains("renderfarm.v1.JobService", services);
        Assert.Contains("renderfarm.v1.WorkerService", services);
        var described = await AskAsync(reflection, admin, new ServerReflectionRequest { FileContainingSymbol = "renderfarm.v1.JobService" });
        Assert.NotEmpty(described.FileDescriptorResponse.FileDescriptorProto);

        var refused = await Assert.ThrowsAsync<RpcException>(() => AskAsync(reflection, client, new ServerReflectionRequest { ListServices = "" }));
        Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
        Assert.Contains("admin key", refused.Status.Detail);
        var anonymous = await Assert.ThrowsAsync<RpcException>(() => AskAsync(reflection, key: null, new ServerReflectionRequest { ListServices = "" }));
        Assert.Equal(StatusCode.Unauthenticated, anonymous.StatusCode);
    }

    private static async Task<ServerReflectionResponse> AskAsync(ServerReflection.ServerReflectionClient reflection, string? key, ServerReflectionRequest request)
    {
        using var call = reflection.ServerReflectionInfo(key is null ? null : new Metadata { { ApiKeyInterceptor.Header, key } },
            deadline: DateTime.UtcNow + Timeout);
        try
        {
            await call.RequestStream.WriteAsync(request);
            await call.RequestStream.CompleteAsync();
        }
        catch (Exception e) when (e is RpcException or InvalidOperationException)
        {
            // A refused caller's call can end before its request is written (the write then fails as Cancelled): the
            // call's own status comes with the response, read below.
        }
        Assert.True(await call.ResponseStream.MoveNext(), "no reflection response");
        return call.ResponseStream.Current;
    }

    private static HttpRequestMessage Request(HttpMethod method, string path, string? key, HttpContent? content = null)
    {
        var request = new HttpRequestMessage(method, path) { Content = content };
        if (key is not null) request.Headers.Add(ApiKeyInterceptor.Header, key);
        return request;
    }

    private static int ReadBigEndian(byte[] bytes, int offset) => System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(offset, 4));
}
