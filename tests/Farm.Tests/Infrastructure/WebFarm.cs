using Microsoft.Playwright;
using RenderFarm.Client;
using RenderFarm.Coordinator.Security;
using RenderFarm.Diffusion;
using RenderFarm.Worker;

namespace RenderFarm.Farm.Tests.Infrastructure;

/// <summary>
/// A farm for the dashboard's browser tests and the HTTP/JSON tests: Redis, a coordinator with API keys on and its
/// dashboard and JSON routes on a second (HTTP/1.1) endpoint, one worker rendering the tiny model through a
/// <see cref="ControlledRenderer"/>, and Debian's chromium driven by Playwright (started on first use). Each test uses
/// keys of its own tenant, so tests sharing it see only their jobs.
/// </summary>
public sealed class WebFarm : IAsyncLifetime
{
    private const string Chromium = "/usr/bin/chromium"; // installed by scripts/test.sh
    public const string WorkerId = "gpu-1";

    private IPlaywright? _playwright;
    private IBrowser? _browser;

    public FarmCluster Farm { get; private set; } = null!;
    public ControlledRenderer Renderer { get; private set; } = null!;
    public string Web { get; private set; } = "";

    /// <summary>
    /// Where the tests write their screenshots: <c>RENDERFARM_SCREENSHOTS</c> if set (the README's pictures are
    /// refreshed with <c>RENDERFARM_SCREENSHOTS=$PWD/docs/screenshots</c>), else <c>screenshots/</c> beside the test assembly.
    /// </summary>
    public static string ScreenshotFolder { get; } =
        Environment.GetEnvironmentVariable("RENDERFARM_SCREENSHOTS") is { Length: > 0 } folder ? folder : Path.Combine(AppContext.BaseDirectory, "screenshots");

    public async Task InitializeAsync()
    {
        Web = $"http://127.0.0.1:{RedisServer.FreePort()}";
        // "Grpc" sorts before "Web", so the cluster's first address (its gRPC URL) stays the HTTP/2-only endpoint.
        Farm = await FarmCluster.StartAsync(workers: 0, configure: s =>
        {
            s["Farm:Auth:Mode"] = "ApiKeys";
            s["Farm:MaxAttempts"] = "1"; // a failure the test injects fails its images at once
            s["Kestrel:Endpoints:Grpc:Url"] = "http://127.0.0.1:0";
            s["Kestrel:Endpoints:Web:Url"] = Web;
        });
        var worker = await KeyAsync("farm", ApiKeyRole.Worker);
        Renderer = new ControlledRenderer(new PipelineRenderer(StableDiffusionPipeline.Load(Farm.ModelDirectory)));
        await Farm.StartWorkerAsync(WorkerId, s => s["Farm:ApiKey"] = worker,
            services => services.AddSingleton(new ModelCatalog(new Dictionary<string, IShardRenderer> { [FarmCluster.Model] = Renderer })));
    }

    private async Task<IBrowser> BrowserAsync()
    {
        if (_browser is not null) return _browser;
        _playwright = await Playwright.CreateAsync();
        return _browser = await _playwright.Chromium.LaunchAsync(new() { ExecutablePath = Chromium, Headless = true, Args = ["--no-sandbox"] });
    }

    public async Task DisposeAsync()
    {
        Renderer?.ReleaseHold();
        if (_browser is not null) await _browser.DisposeAsync();
        _playwright?.Dispose();
        if (Farm is not null) await Farm.DisposeAsync();
        Renderer?.Dispose(); // given to the worker's catalog as an instance: the host does not dispose it
    }

    public async Task<string> KeyAsync(string tenant, ApiKeyRole role) =>
        (await new ApiKeyStore(Farm.Multiplexer).CreateAsync(tenant, role, $"{tenant}-{role}".ToLowerInvariant())).Secret;

    /// <summary>A new browser context (its own session storage) on the dashboard, signed in with <paramref name="key"/>.</summary>
    public async Task<IPage> SignedInAsync(string key, string? screenshotOfSignIn = null)
    {
        var context = await (await BrowserAsync()).NewContextAsync(new() { ViewportSize = new() { Width = 1280, Height = 800 } });
        var page = await context.NewPageAsync();
        page.SetDefaultTimeout(60_000);
        await page.GotoAsync(Web + "/");
        await page.FillAsync("#api-key", key);
        if (screenshotOfSignIn is not null) await ScreenshotAsync(page, screenshotOfSignIn);
        await page.ClickAsync("form.signin button[type=submit]");
        await page.WaitForSelectorAsync("table.jobs");
        return page;
    }

    public static async Task ScreenshotAsync(IPage page, string name)
    {
        Directory.CreateDirectory(ScreenshotFolder);
        var path = Path.Combine(ScreenshotFolder, name + ".png");
        await page.ScreenshotAsync(new() { Path = path, FullPage = true });
        Assert.True(new FileInfo(path).Length > 0, $"screenshot {path} is empty");
    }

    /// <summary>
    /// <c>farm submit</c>, in-process, with <paramref name="key"/> on 64x64 images of 4 steps; returns the job id (its
    /// last line of output).
    /// </summary>
    public async Task<string> CliSubmitAsync(string key, IEnumerable<string> prompts, params string[] options)
    {
        var file = Path.Combine(Farm.Root, $"prompts-{Guid.NewGuid():N}.txt");
        await File.WriteAllLinesAsync(file, prompts);
        var (stdout, stderr) = (new StringWriter(), new StringWriter());
        var exit = await FarmCli.RunAsync(["--coordinator", Farm.CoordinatorUrl, "--api-key", key,
            "submit", file, "--size", "64x64", "--steps", "4", .. options], stdout, stderr, CancellationToken.None);
        Assert.True(exit == 0, $"farm submit exited {exit}: {stderr}");
        return stdout.ToString().Trim().Split('\n')[^1].Trim();
    }

}
