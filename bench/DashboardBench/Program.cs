// The dashboard under load (bench/dashboard.md), measured in the browser with the performance API: the Jobs page with
// 1,000 jobs and a job's page with 1,000 images — first paint (page start to the frame after the data is rendered) and
// update latency (data arriving to the next frame) while a worker renders — plus long tasks, DOM size and JS heap.
// bench/dashboard.sh starts Redis and the coordinator and runs this; this program starts the worker when the queued
// pages have been measured.
//
//   DashboardBench --grpc URL --web URL --redis HOST:PORT --worker-dll PATH --model-dir DIR [--jobs 1000] [--images 1000]
//                  [--loads 5] [--update-seconds 30]
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Grpc.Net.Client;
using Microsoft.Playwright;
using RenderFarm.Protocol;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
var o = Options.Parse(args);
Console.WriteLine($"# dashboard bench: {Environment.ProcessorCount} cores, load average {File.ReadAllText("/proc/loadavg").Split(' ')[0]}, " +
    $"{o.Jobs} jobs + one job of {o.Images} images (64x64, 4 steps, previews every step), {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");

using var channel = GrpcChannel.ForAddress(o.Grpc);
var client = new JobService.JobServiceClient(channel);

// The load: many one-image jobs, and one big job with previews at high priority, so it renders first.
var clock = Stopwatch.StartNew();
using (var gate = new SemaphoreSlim(4))
    await Task.WhenAll(Enumerable.Range(0, o.Jobs).Select(async i =>
    {
        await gate.WaitAsync();
        try { await Submit(client, $"job {i}", images: 1, previewEvery: 0, Priority.Normal); }
        finally { gate.Release(); }
    }));
var big = await Submit(client, "the big one", o.Images, previewEvery: 1, Priority.High);
Console.WriteLine($"submitted {o.Jobs} jobs and job {big} in {clock.Elapsed.TotalSeconds:F1} s");

using var playwright = await Playwright.CreateAsync();
await using var browser = await playwright.Chromium.LaunchAsync(new() { ExecutablePath = "/usr/bin/chromium", Headless = true, Args = ["--no-sandbox"] });
// BypassCSP: the bench's waits are page functions, which the page's policy (no eval) would refuse.
var context = await browser.NewContextAsync(new() { BypassCSP = true, ViewportSize = new() { Width = 1280, Height = 800 } });
await context.AddInitScriptAsync("""
    window.__longTasks = [];
    new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__longTasks.push(e.duration); })
      .observe({ type: "longtask", buffered: true });
    """);
var page = await context.NewPageAsync();
page.SetDefaultTimeout(600_000);
await page.GotoAsync(o.Web + "/");
await page.FillAsync("#api-key", "bench"); // authentication is off on the bench's coordinator: any key signs in
await page.ClickAsync("form.signin button[type=submit]");
await page.WaitForSelectorAsync("table.jobs");

var rows = o.Jobs + 1; // the big job too; the coordinator counts them all (ListJobs' total_jobs) and sends a page of 100
Console.WriteLine();
Console.WriteLine("| page | state | first paint since page start, ms (median of loads) | since navigation, ms | DOM elements | JS heap, MiB | long tasks (count, max ms) |");
Console.WriteLine("|---|---|---|---|---|---|---|");
// The page shows 100 rows at a time (src/Dashboard/src/pages/jobs.ts PageRows): loaded once its pager counts every job.
await FirstPaints("jobs", $"{o.Web}/#/jobs", $"{rows} jobs queued (first 100 shown)", $"document.querySelector('#jobs-range')?.textContent?.endsWith('of {rows}') === true");
await FirstPaints("job", $"{o.Web}/#/job/{big}", $"{o.Images} images queued", $"document.querySelectorAll('#grid figure').length >= {o.Images}");

// Live: the job page of the big job while the worker renders it, with previews.
using var worker = StartWorker(o);
await page.GotoAsync($"{o.Web}/#/job/{big}");
await page.ReloadAsync();
await page.WaitForFunctionAsync("(window.__dashboardPerf?.firstPaint?.job ?? -1) > 0");
await ResetLive();
clock.Restart();
await page.WaitForSelectorAsync("#job-state.completed", new() { Timeout = 1_800_000 });
var renderSeconds = clock.Elapsed.TotalSeconds;
var jobLive = await Live();
var jobPreviews = await page.EvaluateAsync<int>("document.querySelectorAll('#grid img[src^=\"data:\"]').length");
var jobFinals = await page.EvaluateAsync<int>("document.querySelectorAll('#grid img[src^=\"blob:\"]').length");
await FirstPaints("job", $"{o.Web}/#/job/{big}", $"{o.Images} images done", $"document.querySelectorAll('#grid figure[data-state=done]').length > 0");

// Live: the Jobs page while the worker completes one-image jobs (refreshed every 2 s).
await page.GotoAsync($"{o.Web}/#/jobs");
await page.ReloadAsync();
await page.WaitForFunctionAsync("(window.__dashboardPerf?.firstPaint?.jobs ?? -1) > 0");
await ResetLive();
await Task.Delay(TimeSpan.FromSeconds(o.UpdateSeconds)); // a bench: a fixed window of live updates
var jobsLive = await Live();
var completed = await page.EvaluateAsync<int>("document.querySelectorAll('tr[data-state=completed]').length");

Console.WriteLine();
Console.WriteLine("| live page | updates | latency median / p95 / p99 / max, ms | long tasks (count, total ms, max ms) | note |");
Console.WriteLine("|---|---|---|---|---|");
Console.WriteLine($"| job, {o.Images} images rendering | {jobLive.Updates} | {jobLive.Latency} | {jobLive.LongTasks} | rendered in {renderSeconds:F0} s; at the end {jobFinals} final PNGs fetched (tiles on screen), {jobPreviews} previews still shown |");
Console.WriteLine($"| jobs, {rows} jobs (100 shown), jobs completing | {jobsLive.Updates} | {jobsLive.Latency} | {jobsLive.LongTasks} | {o.UpdateSeconds} s window; {completed} rows shown completed at its end |");
worker.Kill(entireProcessTree: true);
return;

async Task FirstPaints(string name, string url, string state, string loaded)
{
    var sincePage = new List<double>();
    var sinceNavigation = new List<double>();
    await page.GotoAsync(url);
    for (var i = 0; i < o.Loads; i++)
    {
        await page.ReloadAsync();
        await page.WaitForFunctionAsync(loaded);
        await page.WaitForFunctionAsync($"(window.__dashboardPerf?.firstPaint?.{name} ?? -1) > 0");
        sincePage.Add(await page.EvaluateAsync<double>($"window.__dashboardPerf.firstPaint.{name}"));
        sinceNavigation.Add(await page.EvaluateAsync<double>($"window.__dashboardPerf.firstPaintAt.{name}"));
    }
    var elements = await page.EvaluateAsync<int>("document.getElementsByTagName('*').length");
    var heap = await page.EvaluateAsync<double>("performance.memory.usedJSHeapSize") / 1048576.0;
    var longTasks = await page.EvaluateAsync<double[]>("window.__longTasks");
    Console.WriteLine($"| {name} | {state} | {Median(sincePage):F0} ({string.Join(", ", sincePage.Select(v => v.ToString("F0")))}) | " +
        $"{Median(sinceNavigation):F0} | {elements} | {heap:F1} | {longTasks.Length}, {(longTasks.Length > 0 ? longTasks.Max() : 0):F0} |");
}

async Task ResetLive() => await page.EvaluateAsync("window.__dashboardPerf.updateLatencies.length = 0; window.__longTasks.length = 0");

async Task<(int Updates, string Latency, string LongTasks)> Live()
{
    var latencies = (await page.EvaluateAsync<double[]>("window.__dashboardPerf.updateLatencies")).Order().ToArray();
    var longTasks = await page.EvaluateAsync<double[]>("window.__longTasks");
    string At(double q) => latencies.Length == 0 ? "-" : latencies[Math.Min(latencies.Length - 1, (int)(q * latencies.Length))].ToString("F0");
    return (latencies.Length, $"{At(0.5)} / {At(0.95)} / {At(0.99)} / {(latencies.Length == 0 ? "-" : latencies[^1].ToString("F0"))}",
        $"{longTasks.Length}, {longTasks.Sum():F0}, {(longTasks.Length > 0 ? longTasks.Max() : 0):F0}");
}

static double Median(List<double> values) => values.Order().ElementAt(values.Count / 2);

// A busy machine can make the coordinator's Redis calls time out (Unavailable, "try again shortly"): try again.
static async Task<string> Submit(JobService.JobServiceClient client, string prompt, int images, uint previewEvery, Priority priority)
{
    for (var attempt = 1; ; attempt++)
    {
        try { return await SubmitOnce(client, prompt, images, previewEvery, priority); }
        catch (Grpc.Core.RpcException e) when (e.StatusCode == Grpc.Core.StatusCode.Unavailable && attempt < 5) { await Task.Delay(1000 * attempt); }
    }
}

static async Task<string> SubmitOnce(JobService.JobServiceClient client, string prompt, int images, uint previewEvery, Priority priority)
{
    using var call = client.SubmitJob();
    var header = new JobHeader
    {
        Params = new GenerationParams { Model = "tiny", Width = 64, Height = 64, Steps = 4, GuidanceScale = 7f },
        PreviewEvery = previewEvery, Priority = priority,
    };
    header.Seeds.Add(1);
    await call.RequestStream.WriteAsync(new SubmitJobRequest { Header = header });
    for (var i = 0; i < images; i++) // one prompt per image (a job takes at most 100 seeds)
        await call.RequestStream.WriteAsync(new SubmitJobRequest { Prompt = new PromptItem { Prompt = images == 1 ? prompt : $"{prompt}, image {i}" } });
    await call.RequestStream.CompleteAsync();
    return (await call).JobId;
}

static Process StartWorker(Options o)
{
    var start = new ProcessStartInfo("dotnet", [o.WorkerDll]) { RedirectStandardOutput = true, RedirectStandardError = true };
    start.Environment["Farm__Redis"] = o.Redis;
    start.Environment["Farm__Coordinator"] = o.Grpc;
    start.Environment["Farm__WorkerId"] = "bench-1";
    start.Environment["Farm__Models__tiny"] = o.ModelDir;
    start.Environment["Urls"] = "http://127.0.0.1:0";
    start.Environment["Logging__LogLevel__Default"] = "Warning";
    var process = Process.Start(start)!;
    process.OutputDataReceived += (_, e) => { };
    process.ErrorDataReceived += (_, e) => { if (e.Data is { } line) Console.Error.WriteLine($"worker: {line}"); };
    process.BeginOutputReadLine();
    process.BeginErrorReadLine();
    return process;
}

sealed record Options(string Grpc, string Web, string Redis, string WorkerDll, string ModelDir, int Jobs, int Images, int Loads, int UpdateSeconds)
{
    public static Options Parse(string[] args)
    {
        var map = new Dictionary<string, string>();
        for (var i = 0; i + 1 < args.Length; i += 2) map[args[i].TrimStart('-')] = args[i + 1];
        string Need(string key) => map.TryGetValue(key, out var v) ? v : throw new ArgumentException($"--{key} is required");
        int Int(string key, int fallback) => map.TryGetValue(key, out var v) ? int.Parse(v) : fallback;
        return new(Need("grpc"), Need("web"), Need("redis"), Need("worker-dll"), Need("model-dir"),
            Int("jobs", 1000), Int("images", 1000), Int("loads", 5), Int("update-seconds", 30));
    }
}
