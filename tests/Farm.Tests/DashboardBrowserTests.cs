using System.Net;
using System.Net.Sockets;
using Grpc.Core;
using Microsoft.Playwright;
using RenderFarm.Coordinator.Security;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// The dashboard in a real browser (Debian's chromium, driven by Playwright) against a real coordinator, Redis and a
/// worker on the tiny model, with authentication on: sign in, see a job's images arrive, open one, cancel a job from
/// the page, and a second tenant not seeing the first's job. Every wait is bounded by Playwright's timeouts.
/// </summary>
public sealed class DashboardBrowserTests : IAsyncLifetime
{
    private const string Chromium = "/usr/bin/chromium"; // installed by scripts/test.sh
    private FarmCluster _farm = null!;
    private IPlaywright _playwright = null!;
    private IBrowser _browser = null!;
    private string _web = "", _alice = "", _bob = "";

    public async Task InitializeAsync()
    {
        var webPort = FreePort();
        _web = $"http://127.0.0.1:{webPort}";
        // "Grpc" sorts before "Web", so the cluster's first address (its gRPC URL) stays the HTTP/2-only endpoint.
        _farm = await FarmCluster.StartAsync(workers: 0, configure: s =>
        {
            s["Farm:Auth:Mode"] = "ApiKeys";
            s["Kestrel:Endpoints:Grpc:Url"] = "http://127.0.0.1:0";
            s["Kestrel:Endpoints:Web:Url"] = _web;
        });
        var keys = new ApiKeyStore(_farm.Multiplexer);
        _alice = (await keys.CreateAsync("alice-corp", ApiKeyRole.Client, "alice")).Secret;
        _bob = (await keys.CreateAsync("bob-corp", ApiKeyRole.Client, "bob")).Secret;
        var worker = (await keys.CreateAsync("farm", ApiKeyRole.Worker, "gpu-1")).Secret;
        await _farm.StartWorkerAsync("gpu-1", s => s["Farm:ApiKey"] = worker);
        _playwright = await Playwright.CreateAsync();
        _browser = await _playwright.Chromium.LaunchAsync(new() { ExecutablePath = Chromium, Headless = true, Args = ["--no-sandbox"] });
    }

    public async Task DisposeAsync()
    {
        await _browser.DisposeAsync();
        _playwright.Dispose();
        await _farm.DisposeAsync();
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static Metadata Key(string secret) => new() { { ApiKeyInterceptor.Header, secret } };

    private Task<SubmitJobResponse> SubmitAsync(string key, string prompt, int images) =>
        _farm.SubmitAsync(new JobHeader
        {
            Params = new GenerationParams { Width = 64, Height = 64, Steps = 4, GuidanceScale = 7f },
            Seeds = { Enumerable.Range(1, images).Select(i => (long)i) },
            PreviewEvery = 1,
        }, [new PromptItem { Prompt = prompt }], headers: Key(key));

    private async Task<IPage> SignedInAsync(string key)
    {
        var context = await _browser.NewContextAsync();
        var page = await context.NewPageAsync();
        page.SetDefaultTimeout(60_000);
        await page.GotoAsync(_web + "/");
        await page.FillAsync("#api-key", key);
        await page.ClickAsync("form.signin button[type=submit]");
        await page.WaitForSelectorAsync("table.jobs");
        return page;
    }

    [Fact]
    public async Task Tenant_sees_its_job_render_opens_an_image_and_cancels_a_job_another_tenant_sees_neither()
    {
        var page = await SignedInAsync(_alice);
        Assert.Equal(_alice, await page.EvaluateAsync<string>("sessionStorage.getItem('renderfarm.apiKey')"));

        // The job appears on the Jobs page, then its page fills with the stored PNGs.
        var job = await SubmitAsync(_alice, "alice's castle", images: 3);
        await page.WaitForSelectorAsync($"tr[data-job='{job.JobId}']");
        await page.ClickAsync($"tr[data-job='{job.JobId}'] a");
        await page.WaitForSelectorAsync("#job-state.completed");
        // Selectors, not page functions: the page's Content-Security-Policy forbids evaluating strings.
        for (var index = 0; index < 3; index++)
            await page.WaitForSelectorAsync($"#grid figure[data-index='{index}'][data-state=done] img[src^=blob]");

        // Click-through: the full image and its parameters.
        await page.ClickAsync("#grid figure[data-index='1']");
        await page.WaitForSelectorAsync("#viewer[open] img.full[src^=blob]");
        var parameters = await page.InnerTextAsync("#viewer table.params");
        Assert.Contains("alice's castle", parameters);
        Assert.Contains("64x64", parameters);
        await page.ClickAsync("#viewer button[value=close]");

        // Cancel from the page: a paused job cannot finish before the click, so the test does not race the worker.
        var held = await SubmitAsync(_alice, "alice's long batch", images: 40);
        await _farm.Jobs.PauseJobAsync(new PauseJobRequest { JobId = held.JobId }, Key(_alice));
        await page.GotoAsync($"{_web}/#/job/{held.JobId}");
        await page.WaitForSelectorAsync("#job-state.paused");
        await page.ClickAsync("button.action.cancel");
        await page.WaitForSelectorAsync("#job-state.cancelled");
        var status = await _farm.Jobs.GetJobAsync(new GetJobRequest { JobId = held.JobId }, Key(_alice));
        Assert.Equal(JobState.Cancelled, status.State);

        // Bob signs in in a separate browser context: neither job is listed, and alice's job page refuses him.
        var bob = await SignedInAsync(_bob);
        await bob.GetByText("No jobs yet").WaitForAsync(); // the list has been read (and is empty for him)
        Assert.Equal(0, await bob.Locator("tr[data-job]").CountAsync());
        await bob.GotoAsync($"{_web}/#/job/{job.JobId}");
        await bob.WaitForSelectorAsync(".error");
        Assert.Equal(0, await bob.Locator("#grid figure").CountAsync());
        Assert.Equal(0, await bob.Locator("table.jobs tr[data-job]").CountAsync());
    }
}
