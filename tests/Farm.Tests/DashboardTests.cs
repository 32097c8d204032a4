using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using RenderFarm.Coordinator.Security;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// The dashboard's files as the coordinator serves them (embedded at build), and the HTTP/JSON routes the page reads,
/// with authentication on: a tenant's key lists only that tenant's jobs.
/// </summary>
public sealed class DashboardTests : IAsyncLifetime
{
    private FarmCluster _farm = null!;
    private HttpClient _http = null!;
    private string _alice = "", _bob = "";

    public async Task InitializeAsync()
    {
        _farm = await FarmCluster.StartAsync(workers: 0, configure: s => s["Farm:Auth:Mode"] = "ApiKeys");
        var keys = new ApiKeyStore(_farm.Multiplexer);
        _alice = (await keys.CreateAsync("alice-corp", ApiKeyRole.Client, "alice")).Secret;
        _bob = (await keys.CreateAsync("bob-corp", ApiKeyRole.Client, "bob")).Secret;
        _http = new HttpClient { BaseAddress = new Uri(_farm.CoordinatorUrl) };
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _farm.DisposeAsync();
    }

    /// <summary>The test cluster's endpoint speaks HTTP/2 only (gRPC without TLS): requests use prior knowledge.</summary>
    private static HttpRequestMessage Get(string path, string? key)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, path) { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
        if (key is not null) request.Headers.Add(ApiKeyInterceptor.Header, key);
        return request;
    }

    [Fact]
    public async Task Page_and_its_files_are_served_without_a_key_with_etags()
    {
        using var page = await _http.SendAsync(Get("/", key: null));
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Equal("text/html", page.Content.Headers.ContentType!.MediaType);
        Assert.Contains("/dashboard/app.js", await page.Content.ReadAsStringAsync());

        using var script = await _http.SendAsync(Get("/dashboard/app.js", key: null));
        Assert.Equal(HttpStatusCode.OK, script.StatusCode);
        Assert.Equal("text/javascript", script.Content.Headers.ContentType!.MediaType);
        Assert.Contains("x-api-key", await script.Content.ReadAsStringAsync());

        var again = Get("/dashboard/app.js", key: null);
        again.Headers.IfNoneMatch.Add(script.Headers.ETag!);
        using var notModified = await _http.SendAsync(again);
        Assert.Equal(HttpStatusCode.NotModified, notModified.StatusCode);

        using var missing = await _http.SendAsync(Get("/dashboard/nothing.js", key: null));
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
    }

    [Fact]
    public async Task Json_routes_need_a_key_and_show_a_tenant_only_its_jobs()
    {
        using var anonymous = await _http.SendAsync(Get("/v1/jobs", key: null));
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);

        using var caller = await _http.SendAsync(Get("/v1/caller", _alice));
        caller.EnsureSuccessStatusCode();
        var who = await caller.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal("alice-corp", who.GetProperty("tenant").GetString());
        Assert.Equal("client", who.GetProperty("role").GetString());

        var header = new JobHeader { Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7f }, Seeds = { 3 } };
        var job = await _farm.SubmitAsync(header, [new PromptItem { Prompt = "alice's castle" }],
            headers: new Grpc.Core.Metadata { { ApiKeyInterceptor.Header, _alice } });

        Assert.Contains(job.JobId, await JobIdsAsync(_alice));
        Assert.DoesNotContain(job.JobId, await JobIdsAsync(_bob));
        using var bobReads = await _http.SendAsync(Get($"/v1/jobs/{job.JobId}", _bob));
        Assert.False(bobReads.IsSuccessStatusCode);
    }

    [Fact]
    public async Task A_batch_posted_as_json_is_queued_and_a_bad_one_is_a_400_with_the_message_grpc_gives()
    {
        // As the README's curl example: protobuf JSON names, a seed as a number and one as a string.
        using var posted = await _http.SendAsync(Post("/v1/jobs", _alice,
            """{"header": {"params": {"width": 64, "height": 64, "steps": 2}, "seeds": [1, "2"]}, "prompts": [{"prompt": "a"}, {"prompt": "b"}]}"""));
        posted.EnsureSuccessStatusCode();
        var job = await posted.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal(4, job.GetProperty("imageCount").GetInt32());
        Assert.Contains(job.GetProperty("jobId").GetString(), await JobIdsAsync(_alice));

        // The same invalid batch over gRPC and over HTTP/JSON: refused with the same reason.
        var header = new JobHeader { Params = new GenerationParams { Width = 65, Height = 64, Steps = 2 }, Seeds = { 1 } };
        var refused = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => _farm.SubmitAsync(header, [new PromptItem { Prompt = "a" }],
            headers: new Grpc.Core.Metadata { { ApiKeyInterceptor.Header, _alice } }));
        Assert.Equal(Grpc.Core.StatusCode.InvalidArgument, refused.StatusCode);
        using var bad = await _http.SendAsync(Post("/v1/jobs", _alice,
            """{"header": {"params": {"width": 65, "height": 64, "steps": 2}, "seeds": [1]}, "prompts": [{"prompt": "a"}]}"""));
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        var error = await bad.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal(refused.Status.Detail, error.GetProperty("message").GetString());
    }

    private static HttpRequestMessage Post(string path, string key, string json)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path)
        {
            Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new StringContent(json, System.Text.Encoding.UTF8, "application/json"),
        };
        request.Headers.Add(ApiKeyInterceptor.Header, key);
        return request;
    }

    private async Task<List<string>> JobIdsAsync(string key)
    {
        using var response = await _http.SendAsync(Get("/v1/jobs", key));
        response.EnsureSuccessStatusCode();
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        return body.TryGetProperty("jobs", out var jobs) ? jobs.EnumerateArray().Select(j => j.GetProperty("jobId").GetString()!).ToList() : [];
    }
}
