using System.Net;
using System.Text.Json;
using Grpc.Core;
using RenderFarm.Coordinator.Security;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// WatchJob over HTTP (JSON transcoding of the server stream) read with a plain HttpClient, as curl or a script
/// would: events arrive while the job runs, one JSON object per line, previews only for a watcher that asks, and the
/// response ends with the job's final event. The render is held at its first preview, so "while the job runs" is a
/// fact the test sets up, not a race.
/// </summary>
public sealed class JsonEventStreamTests(WebFarm fixture) : IClassFixture<WebFarm>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(2);

    private HttpRequestMessage Events(string jobId, string? key, string query = "")
    {
        var request = new HttpRequestMessage(HttpMethod.Get, $"{fixture.Web}/v1/jobs/{jobId}/events{query}");
        if (key is not null) request.Headers.Add(ApiKeyInterceptor.Header, key);
        return request;
    }

    /// <summary>Reads the body's lines as JSON objects until <paramref name="until"/> holds for one, or the body ends.</summary>
    private static async Task<List<JsonElement>> ReadAsync(StreamReader body, Func<List<JsonElement>, bool> until, CancellationToken cancellationToken)
    {
        var events = new List<JsonElement>();
        while (await body.ReadLineAsync(cancellationToken) is { } line)
        {
            if (line.Length == 0) continue;
            events.Add(JsonDocument.Parse(line).RootElement.Clone()); // one whole event per line
            if (until(events)) break;
        }
        return events;
    }

    private static bool Has(JsonElement e, string kind) => e.TryGetProperty(kind, out _);

    [Fact]
    public async Task Watch_job_over_http_streams_json_events_while_the_job_runs_and_ends_with_it()
    {
        var key = await fixture.KeyAsync("stream-corp", ApiKeyRole.Client);
        var other = await fixture.KeyAsync("stream-other-corp", ApiKeyRole.Client);
        using var http = new HttpClient();
        using var cts = new CancellationTokenSource(Timeout);

        var hold = fixture.Renderer.HoldAtNextPreview();
        SubmitJobResponse job;
        try
        {
            job = await fixture.Farm.SubmitAsync(new JobHeader
            {
                Params = new GenerationParams { Width = 64, Height = 64, Steps = 4, GuidanceScale = 7f },
                Seeds = { 1, 2 },
                PreviewEvery = 1,
            }, [new PromptItem { Prompt = "a stream of events" }], headers: new Metadata { { ApiKeyInterceptor.Header, key } });
            await hold.Held.WaitAsync(Timeout);

            using var response = await http.SendAsync(Events(job.JobId, key, "?previews=true"), HttpCompletionOption.ResponseHeadersRead, cts.Token);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
            using var body = new StreamReader(await response.Content.ReadAsStreamAsync(cts.Token));

            // While the render is held the job cannot finish: these events were streamed, not buffered to the end. The
            // step can come after the previews: a watcher reads the job's events, then its previews, and both may land
            // in between.
            var running = await ReadAsync(body, events => events.Count(e => Has(e, "preview")) == 2 && events.Any(e => Has(e, "step")), cts.Token);
            Assert.True(Has(running[0], "queued"), running[0].ToString());
            Assert.Contains(running, e => Has(e, "shardStarted"));
            Assert.Contains(running, e => Has(e, "step"));
            Assert.DoesNotContain(running, e => Has(e, "jobFinished"));
            var previews = running.Where(e => Has(e, "preview")).Select(e => e.GetProperty("preview")).ToList();
            Assert.Equal([0, 1], previews.Select(p => p.TryGetProperty("index", out var i) ? i.GetInt32() : 0).Order());
            Assert.All(previews, p => Assert.StartsWith("iVBORw0KGgo", p.GetProperty("png").GetString())); // base64 of a PNG signature

            hold.Release();
            var rest = await ReadAsync(body, _ => false, cts.Token); // to the end of the response
            var final = rest[^1].GetProperty("jobFinished");
            Assert.Equal("JOB_STATE_COMPLETED", final.GetProperty("state").GetString());
            Assert.Equal(2, rest.Count(e => Has(e, "imageDone")));
        }
        finally
        {
            hold.Release();
        }

        // A watcher that does not ask for previews gets none; the finished job's stream is the whole record, then ends.
        using (var plain = await http.SendAsync(Events(job.JobId, key), HttpCompletionOption.ResponseHeadersRead, cts.Token))
        {
            using var body = new StreamReader(await plain.Content.ReadAsStreamAsync(cts.Token));
            var all = await ReadAsync(body, _ => false, cts.Token);
            Assert.DoesNotContain(all, e => Has(e, "preview"));
            Assert.True(Has(all[0], "queued"));
            Assert.True(Has(all[^1], "jobFinished"));
        }

        // The same authentication as gRPC: no key is 401, another tenant's key does not find the job.
        using (var anonymous = await http.SendAsync(Events(job.JobId, key: null), cts.Token))
            Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        using (var stranger = await http.SendAsync(Events(job.JobId, other), cts.Token))
            Assert.Equal(HttpStatusCode.NotFound, stranger.StatusCode);
    }
}
