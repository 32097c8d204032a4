using Grpc.Core;
using Microsoft.Playwright;
using RenderFarm.Coordinator.Security;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.ModelBuilder;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// The dashboard in a real browser (Debian's chromium, driven by Playwright) against a real coordinator, Redis and a
/// worker on the tiny model, with authentication on. Every wait is on a DOM condition, bounded by Playwright's
/// timeouts; where a state would otherwise pass in milliseconds (a preview, a queued job), the worker's render is held
/// at a known point (<see cref="ControlledRenderer"/>) until the test has seen it. Each test writes screenshots of the
/// pages it visits (<see cref="WebFarm.ScreenshotFolder"/>).
/// </summary>
public sealed class DashboardBrowserTests(WebFarm fixture) : IClassFixture<WebFarm>
{
    private static readonly TimeSpan HoldTimeout = TimeSpan.FromSeconds(60);

    private static Metadata Key(string secret) => new() { { ApiKeyInterceptor.Header, secret } };

    private Task<SubmitJobResponse> SubmitAsync(string key, string prompt, int images, uint previewEvery = 1) =>
        fixture.Farm.SubmitAsync(new JobHeader
        {
            Params = new GenerationParams { Width = 64, Height = 64, Steps = 4, GuidanceScale = 7f },
            Seeds = { Enumerable.Range(1, images).Select(i => (long)i) },
            PreviewEvery = previewEvery,
        }, [new PromptItem { Prompt = prompt }], headers: Key(key));

    // Once decoded: a src just set has no pixels yet.
    private static Task<int> NaturalWidthAsync(ILocator image) => image.EvaluateAsync<int>("async img => { await img.decode(); return img.naturalWidth; }");

    [Fact]
    public async Task Tenant_sees_its_job_render_opens_an_image_and_cancels_a_job_another_tenant_sees_neither()
    {
        var (alice, bob) = (await fixture.KeyAsync("alice-corp", ApiKeyRole.Client), await fixture.KeyAsync("bob-corp", ApiKeyRole.Client));
        var page = await fixture.SignedInAsync(alice);
        Assert.Equal(alice, await page.EvaluateAsync<string>("sessionStorage.getItem('renderfarm.apiKey')"));

        // The job appears on the Jobs page, then its page fills with the stored PNGs.
        var job = await SubmitAsync(alice, "alice's castle", images: 3);
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
        await WebFarm.ScreenshotAsync(page, "image");
        await page.ClickAsync("#viewer button[value=close]");

        // Cancel from the page: a paused job cannot finish before the click, so the test does not race the worker.
        var held = await SubmitAsync(alice, "alice's long batch", images: 40);
        await fixture.Farm.Jobs.PauseJobAsync(new PauseJobRequest { JobId = held.JobId }, Key(alice));
        await page.GotoAsync($"{fixture.Web}/#/job/{held.JobId}");
        await page.WaitForSelectorAsync("#job-state.paused");
        await page.ClickAsync("button.action.cancel");
        await page.WaitForSelectorAsync("#job-state.cancelled");
        var status = await fixture.Farm.Jobs.GetJobAsync(new GetJobRequest { JobId = held.JobId }, Key(alice));
        Assert.Equal(JobState.Cancelled, status.State);

        // Bob signs in in a separate browser context: neither job is listed, and alice's job page refuses him.
        var other = await fixture.SignedInAsync(bob);
        await other.GetByText("No jobs yet").WaitForAsync(); // the list has been read (and is empty for him)
        Assert.Equal(0, await other.Locator("tr[data-job]").CountAsync());
        await other.GotoAsync($"{fixture.Web}/#/job/{job.JobId}");
        await other.WaitForSelectorAsync(".error");
        Assert.Equal(0, await other.Locator("#grid figure").CountAsync());
        Assert.Equal(0, await other.Locator("table.jobs tr[data-job]").CountAsync());
    }

    [Fact]
    public async Task A_job_submitted_with_the_cli_shows_a_live_preview_in_its_page_then_the_final_pngs()
    {
        var key = await fixture.KeyAsync("carol-corp", ApiKeyRole.Client);
        var page = await fixture.SignedInAsync(key, screenshotOfSignIn: "signin");

        // The render stops right after its first preview, so the preview is the images' state until the test lets go.
        var hold = fixture.Renderer.HoldAtNextPreview();
        var jobId = await fixture.CliSubmitAsync(key, ["a lighthouse in a storm, oil painting"], "--seeds", "1,2", "--previews", "1");
        await hold.Held.WaitAsync(HoldTimeout);

        await page.WaitForSelectorAsync($"tr[data-job='{jobId}'][data-state=running]");
        await page.ClickAsync($"tr[data-job='{jobId}'] a");
        foreach (var index in new[] { 0, 1 })
        {
            var preview = page.Locator($"#grid figure[data-index='{index}'][data-state=preview] img.preview[src^='data:image/png']");
            await preview.WaitForAsync();
            Assert.Equal(64 / 8, await NaturalWidthAsync(preview)); // latent-sized: the preview, not a final image
            Assert.Contains("step 1/4", await page.Locator($"#grid figure[data-index='{index}'] figcaption").InnerTextAsync());
        }
        await WebFarm.ScreenshotAsync(page, "job-preview");

        hold.Release();
        await page.WaitForSelectorAsync("#job-state.completed");
        foreach (var index in new[] { 0, 1 })
        {
            var final = page.Locator($"#grid figure[data-index='{index}'][data-state=done] img[src^=blob]");
            await final.WaitForAsync();
            Assert.Equal(64, await NaturalWidthAsync(final));
            Assert.False(await final.EvaluateAsync<bool>("img => img.classList.contains('preview')"));
        }
        await page.Locator("#log li").First.WaitForAsync();
        await WebFarm.ScreenshotAsync(page, "job");
    }

    [Fact]
    public async Task An_address_whose_job_id_is_not_valid_percent_encoding_shows_the_live_jobs_page_not_the_stopped_page_before_it()
    {
        var key = await fixture.KeyAsync("frank-corp", ApiKeyRole.Client);
        var page = await fixture.SignedInAsync(key);
        var job = await SubmitAsync(key, "the job page left behind", images: 1, previewEvery: 0);
        await page.GotoAsync($"{fixture.Web}/#/job/{job.JobId}");
        await page.WaitForSelectorAsync("#job-state.completed");

        // A truncated UTF-8 escape: decodeURIComponent throws on it, after the job page has been stopped.
        await page.GotoAsync($"{fixture.Web}/#/job/%E0%A4");
        await page.WaitForSelectorAsync($"table.jobs tr[data-job='{job.JobId}']", new() { Timeout = 20_000 });
        Assert.Equal(0, await page.Locator("#job-state").CountAsync());
        // The jobs page runs: a job submitted now appears in it.
        var next = await SubmitAsync(key, "a job submitted afterwards", images: 1, previewEvery: 0);
        await page.WaitForSelectorAsync($"tr[data-job='{next.JobId}']");
    }

    [Fact]
    public async Task Pause_resume_and_retry_buttons_change_the_jobs_state_and_the_jobs_finish()
    {
        var key = await fixture.KeyAsync("dave-corp", ApiKeyRole.Client);
        var page = await fixture.SignedInAsync(key);

        // A job held at its first preview keeps the worker busy, so the second job is still waiting when it is paused.
        var hold = fixture.Renderer.HoldAtNextPreview();
        var busy = await SubmitAsync(key, "the job the worker is on", images: 1);
        await hold.Held.WaitAsync(HoldTimeout);
        try
        {
            var waiting = await SubmitAsync(key, "the job behind it", images: 2, previewEvery: 0);
            var row = $"tr[data-job='{waiting.JobId}']";
            await page.ClickAsync($"{row} button.action.pause");
            await page.WaitForSelectorAsync($"{row}[data-state=paused]");
            await page.WaitForSelectorAsync($"tr[data-job='{busy.JobId}'][data-state=running]");
            await WebFarm.ScreenshotAsync(page, "jobs");
            Assert.Equal(JobState.Paused, (await fixture.Farm.Jobs.GetJobAsync(new GetJobRequest { JobId = waiting.JobId }, Key(key))).State);
            await page.ClickAsync($"{row} button.action.resume");
            await page.WaitForSelectorAsync($"{row}:not([data-state=paused])");
            hold.Release();
            // A paused job never completes: completing shows the resume re-queued it.
            await page.WaitForSelectorAsync($"{row}[data-state=completed]");
            await page.WaitForSelectorAsync($"tr[data-job='{busy.JobId}'][data-state=completed]");
        }
        finally
        {
            hold.Release();
        }

        // Retry: a job whose images failed renders them again from its page.
        fixture.Renderer.FailPromptsContaining("unlucky");
        try
        {
            var failing = await SubmitAsync(key, "an unlucky job", images: 2, previewEvery: 0);
            await page.GotoAsync($"{fixture.Web}/#/job/{failing.JobId}");
            await page.WaitForSelectorAsync("#job-state.failed");
            await page.WaitForSelectorAsync("#grid figure[data-index='1'][data-state=failed]");
            Assert.Contains("the test refuses prompts containing 'unlucky'", await page.Locator("#failures li").First.InnerTextAsync());
            await WebFarm.ScreenshotAsync(page, "job-failed");
            fixture.Renderer.StopFailing();
            await page.ClickAsync("button.action.retry");
            await page.WaitForSelectorAsync("#job-state.completed");
            foreach (var index in new[] { 0, 1 })
                await page.WaitForSelectorAsync($"#grid figure[data-index='{index}'][data-state=done] img[src^=blob]");
            Assert.Equal(0, await page.Locator("#failures li").CountAsync());
        }
        finally
        {
            fixture.Renderer.StopFailing();
        }
    }

    [Fact]
    public async Task A_base_and_refiner_job_shows_its_model_and_refiner_in_the_jobs_list_and_its_page_and_its_images()
    {
        // The builder's SDXL base and refiner presets, each on a worker of its own (as RefinerTests' farm): the job's
        // stages run on different workers, and the pages name both models.
        const string Base = "tiny-sdxl", Refiner = "tiny-sdxl-refiner";
        var workerKey = await fixture.KeyAsync("farm-sdxl", ApiKeyRole.Worker);
        foreach (var (worker, model) in new[] { ("sdxl-base-1", Base), ("sdxl-refiner-1", Refiner) })
        {
            var directory = Path.Combine(fixture.Farm.Root, model);
            ModelPresets.Write(model, directory);
            await fixture.Farm.StartWorkerAsync(worker, s =>
            {
                s["Farm:ApiKey"] = workerKey;
                s.Remove($"Farm:Models:{FarmCluster.Model}");
                s[$"Farm:Models:{model}"] = directory;
            });
        }
        var client = await fixture.KeyAsync("rita-corp", ApiKeyRole.Client);
        var refined = await fixture.Farm.SubmitAsync(new JobHeader
        {
            Params = new GenerationParams { Model = Base, Width = 64, Height = 48, Steps = 4, GuidanceScale = 5f, Refiner = Refiner, RefinerStart = 0.5f },
            Seeds = { 1 },
        }, [new PromptItem { Prompt = "a refined castle" }], headers: Key(client));
        var plain = await SubmitAsync(client, "a plain castle", images: 1, previewEvery: 0);

        // The Jobs list: each job's model, and the refiner only for the job that has one.
        var page = await fixture.SignedInAsync(client);
        var refinedModel = page.Locator($"tr[data-job='{refined.JobId}'] td.model");
        await refinedModel.WaitForAsync();
        Assert.Equal($"{Base}\n→ refiner {Refiner} at 0.5", (await refinedModel.InnerTextAsync()).Trim());
        var plainModel = page.Locator($"tr[data-job='{plain.JobId}'] td.model");
        Assert.Equal(FarmCluster.Model, (await plainModel.InnerTextAsync()).Trim());
        Assert.Equal(0, await plainModel.Locator(".refiner").CountAsync());
        await page.WaitForSelectorAsync($"tr[data-job='{refined.JobId}'][data-state=completed]");
        await WebFarm.ScreenshotAsync(page, "jobs-models");

        // Its page: both models in the job's parameters, each stage started on the worker holding its model.
        await page.ClickAsync($"tr[data-job='{refined.JobId}'] a");
        await page.WaitForSelectorAsync("#job-state.completed");
        Assert.Contains($"{Base} → refiner {Refiner} at 0.5 · 64x48", await page.InnerTextAsync("#job-params"));
        await page.WaitForSelectorAsync("#log li:has-text('shard 0 (refiner stage) started on sdxl-refiner-1')");
        Assert.Contains("shard 0 (base stage) started on sdxl-base-1", await page.InnerTextAsync("#log"));

        // Its image's parameters: the base model and the refiner with its switch.
        await page.ClickAsync("#grid figure[data-index='0']");
        await page.WaitForSelectorAsync("#viewer[open] img.full[src^=blob]");
        var parameters = page.Locator("#viewer table.params");
        Assert.Equal(Base, await parameters.Locator("tr:has(th:text-is('Model')) td").InnerTextAsync());
        Assert.Equal($"{Refiner}, switch at 0.5", await parameters.Locator("tr:has(th:text-is('Refiner')) td").InnerTextAsync());
        await WebFarm.ScreenshotAsync(page, "refiner");
    }

    [Fact]
    public async Task An_admin_sees_the_worker_and_its_model_releases_a_quarantined_worker_and_a_client_does_not_see_the_fleet()
    {
        var admin = await fixture.KeyAsync("ops", ApiKeyRole.Admin);
        var client = await fixture.KeyAsync("erin-corp", ApiKeyRole.Client);

        // A worker whose model loads but fails every shard (as FailureTests' broken worker), alone on that model: each
        // shard fails once (Farm:MaxAttempts 1) and is held against it, and Farm:QuarantineAfterFailures' 3 quarantine it.
        const string Broken = "broken-1", BrokenModel = "broken-model";
        var workerKey = await fixture.KeyAsync("farm-broken", ApiKeyRole.Worker);
        await fixture.Farm.StartWorkerAsync(Broken, s =>
        {
            s["Farm:ApiKey"] = workerKey;
            s["Farm:WarmUp"] = "false";
            s.Remove($"Farm:Models:{FarmCluster.Model}");
            s[$"Farm:Models:{BrokenModel}"] = TestModels.WriteBroken(fixture.Farm.Root);
        });
        await fixture.Farm.SubmitAsync(new JobHeader
        {
            Params = new GenerationParams { Model = BrokenModel, Width = 64, Height = 64, Steps = 4, GuidanceScale = 7f },
            Seeds = { Enumerable.Range(1, 12).Select(i => (long)i) }, // 3 shards of 4
        }, [new PromptItem { Prompt = "a job for a broken worker" }], headers: Key(client));
        await fixture.Farm.Jobs.WaitForWorkerAsync(Broken, w => w.State == WorkerState.Quarantined, Key(admin));

        // The good worker busy on a job (held at a preview) with more of it waiting: the pages show a farm at work.
        var hold = fixture.Renderer.HoldAtNextPreview();
        var job = await SubmitAsync(client, "a busy farm", images: 12);
        await hold.Held.WaitAsync(HoldTimeout);
        try
        {
            // A client's nav has no fleet pages, and typing their address shows its jobs, not the workers.
            var clientPage = await fixture.SignedInAsync(client);
            await clientPage.WaitForSelectorAsync($"tr[data-job='{job.JobId}']");
            Assert.Equal(0, await clientPage.Locator("#nav a[href='#/workers'], #nav a[href='#/models']").CountAsync());
            foreach (var fleetPage in new[] { "workers", "models" })
            {
                // From the job's page (no jobs table), so the jobs table waited for is the fleet address's rendering.
                await clientPage.GotoAsync($"{fixture.Web}/#/job/{job.JobId}");
                await clientPage.WaitForSelectorAsync("#job-state");
                await clientPage.GotoAsync($"{fixture.Web}/#/{fleetPage}");
                await clientPage.WaitForSelectorAsync($"table.jobs tr[data-job='{job.JobId}']");
                Assert.Equal(0, await clientPage.Locator("table.workers, table.models, button.release").CountAsync());
            }

            var page = await fixture.SignedInAsync(admin);
            await page.ClickAsync("#nav a[href='#/workers']");
            var worker = page.Locator($"table.workers tr[data-worker='{WebFarm.WorkerId}']");
            await worker.WaitForAsync();
            await page.WaitForSelectorAsync($"table.workers tr[data-worker='{WebFarm.WorkerId}'] a[href='#/job/{job.JobId}']");
            Assert.Equal(FarmCluster.Model, await worker.Locator("td").Nth(2).InnerTextAsync());
            Assert.Equal(0, await worker.Locator("button.release").CountAsync()); // only a quarantined worker has one

            // The quarantined worker, with its model and a Release button that lifts the quarantine in the farm's registry.
            var quarantined = page.Locator($"table.workers tr[data-worker='{Broken}'][data-state=quarantined]");
            await quarantined.WaitForAsync();
            Assert.Equal(BrokenModel, await quarantined.Locator("td").Nth(2).InnerTextAsync());
            await WebFarm.ScreenshotAsync(page, "workers");
            await quarantined.Locator("button.release").ClickAsync();
            await page.WaitForSelectorAsync($"table.workers tr[data-worker='{Broken}']:not([data-state=quarantined])");
            var released = (await fixture.Farm.Jobs.ListWorkersAsync(new ListWorkersRequest(), Key(admin))).Workers.Single(w => w.WorkerId == Broken);
            Assert.NotEqual(WorkerState.Quarantined, released.State);
            Assert.Equal(0, await page.Locator($"table.workers tr[data-worker='{Broken}'] button.release").CountAsync());

            await page.ClickAsync("#nav a[href='#/models']");
            var model = page.Locator($"table.models tr[data-model='{FarmCluster.Model}']");
            await model.WaitForAsync();
            Assert.Equal("1", await model.Locator("td").Nth(1).InnerTextAsync()); // one worker serves it
            await WebFarm.ScreenshotAsync(page, "models");
        }
        finally
        {
            hold.Release();
        }
        await fixture.Farm.WatchToEndAsync(job.JobId, TimeSpan.FromMinutes(2), Key(client));
    }
}
