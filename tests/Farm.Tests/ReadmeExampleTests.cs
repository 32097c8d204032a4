using System.Diagnostics;
using System.Text;
using System.Text.Json;
using RenderFarm.Coordinator.Security;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Imaging;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// The README's HTTP/JSON examples (section "HTTP/JSON: curl and Python", the fenced blocks after an
/// <c>&lt;!-- example: NAME --&gt;</c> marker) run as a reader runs them — bash with curl and jq, python3 with requests —
/// against a farm. Only their environment is the test's: FARM_URL (the coordinator's HTTP/1.1 endpoint), FARM_API_KEY
/// (a client key of a tenant of the test's own), FARM_MODEL and FARM_STEPS (the farm's tiny model, 2 steps, for sd15's
/// 30: the size stays the examples' 512x512). What they print and the files they write are then checked.
/// </summary>
public sealed class ReadmeExampleTests(WebFarm fixture) : IClassFixture<WebFarm>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(4);
    private const int Side = 512; // the examples' width and height

    [Fact]
    public async Task TheCurlExampleSubmitsReadsTheEventsToTheJobsEndListsTheImagesDownloadsAPngAndListsJobs()
    {
        var (stdout, folder) = await RunAsync("curl", "bash", "example.sh", "readme-curl");

        // What each curl printed, in order: the job's status, its events up to the end, its images, a page of jobs.
        var printed = JsonValues(stdout);
        Assert.True(printed.Count >= 4, stdout);
        var jobId = printed[0].GetProperty("jobId").GetString();
        Assert.False(string.IsNullOrEmpty(jobId), stdout);
        var events = printed[1..^2];
        AssertEndsWithTheJobCompleted(events, images: 4);

        var images = printed[^2].GetProperty("images").EnumerateArray().ToList();
        Assert.Equal(4, images.Count); // 2 prompts x 2 seeds
        Assert.All(images, i => Assert.Equal("IMAGE_STATE_DONE", i.GetProperty("state").GetString()));
        Assert.Equal(["a lighthouse at dusk", "a lighthouse at dusk", "a red fox in fresh snow", "a red fox in fresh snow"],
            images.Select(i => i.GetProperty("prompt").GetString()).Order());

        // No failed job, and the count of all this tenant's jobs: this one.
        var jobs = printed[^1];
        Assert.False(jobs.TryGetProperty("jobs", out var failed) && failed.GetArrayLength() > 0, jobs.ToString());
        Assert.Equal("1", jobs.GetProperty("totalJobs").ToString()); // uint64: a JSON string in protobuf JSON

        Assert.Equal(["0.png"], PngsIn(folder));
        AssertPngOfTheExamplesSize(Path.Combine(folder, "0.png"));
    }

    [Fact]
    public async Task ThePythonExampleSubmitsReadsTheEventsToTheJobsEndAndWritesEachPng()
    {
        var (stdout, folder) = await RunAsync("python", "python3", "example.py", "readme-python");

        AssertEndsWithTheJobCompleted(JsonValues(stdout), images: 2);
        Assert.Equal(["0.png", "1.png"], PngsIn(folder)); // 2 prompts x 1 seed
        foreach (var png in PngsIn(folder)) AssertPngOfTheExamplesSize(Path.Combine(folder, png));
    }

    /// <summary>The job's events as printed: one final event, the last, and it says the job completed.</summary>
    private static void AssertEndsWithTheJobCompleted(IReadOnlyList<JsonElement> events, int images)
    {
        Assert.NotEmpty(events);
        Assert.Single(events, e => e.TryGetProperty("jobFinished", out _));
        var finished = events[^1].GetProperty("jobFinished");
        Assert.Equal("JOB_STATE_COMPLETED", finished.GetProperty("state").GetString());
        Assert.Equal(images, finished.GetProperty("imagesDone").GetInt32());
    }

    private static void AssertPngOfTheExamplesSize(string path)
    {
        var check = ImageDecoder.Check(File.ReadAllBytes(path), long.MaxValue); // a full decode
        Assert.True(check.Decodes, $"{path}: {check.Error}");
        var header = check.Header!.Value;
        Assert.Equal((ImageFormat.Png, Side, Side), (header.Format, header.Width, header.Height));
    }

    private static List<string> PngsIn(string folder) =>
        Directory.GetFiles(folder, "*.png").Select(f => Path.GetFileName(f)).Order(StringComparer.Ordinal).ToList();

    /// <summary>
    /// Runs the README's block marked <paramref name="example"/> with <paramref name="interpreter"/> in a folder of its
    /// own, with a new client key of <paramref name="tenant"/>; returns what it printed and the folder.
    /// </summary>
    private async Task<(string Stdout, string Folder)> RunAsync(string example, string interpreter, string file, string tenant)
    {
        var folder = Directory.CreateDirectory(Path.Combine(fixture.Farm.Root, example)).FullName;
        await File.WriteAllTextAsync(Path.Combine(folder, file), ReadmeBlock(example));
        var info = new ProcessStartInfo(interpreter)
        {
            WorkingDirectory = folder,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        // bash stops at the first failing command (curl -f fails on an HTTP error); a reader's shell would carry on.
        if (interpreter == "bash") foreach (var option in new[] { "-euo", "pipefail" }) info.ArgumentList.Add(option);
        info.ArgumentList.Add(file);
        info.Environment["FARM_URL"] = fixture.Web;
        info.Environment["FARM_API_KEY"] = await fixture.KeyAsync(tenant, ApiKeyRole.Client);
        info.Environment["FARM_MODEL"] = FarmCluster.Model;
        info.Environment["FARM_STEPS"] = "2";

        using var process = Process.Start(info)!;
        var (stdout, stderr) = (process.StandardOutput.ReadToEndAsync(), process.StandardError.ReadToEndAsync());
        using var timeout = new CancellationTokenSource(Timeout);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"the {example} example did not end within {Timeout}: {await stdout}\n{await stderr}");
        }
        Assert.True(process.ExitCode == 0, $"the {example} example exited {process.ExitCode}: {await stderr}\n{await stdout}");
        return (await stdout, folder);
    }

    /// <summary>The fenced block right after <c>&lt;!-- example: NAME --&gt;</c> in the repository's README.md.</summary>
    private static string ReadmeBlock(string name)
    {
        var lines = File.ReadAllLines(Path.Combine(AppProcess.RepositoryRoot(), "README.md"));
        var marker = Array.IndexOf(lines, $"<!-- example: {name} -->");
        Assert.True(marker >= 0, $"README.md has no <!-- example: {name} --> marker");
        var open = marker + 1;
        Assert.True(open < lines.Length && lines[open].StartsWith("```", StringComparison.Ordinal), $"no fenced block right after the {name} marker");
        var close = Array.FindIndex(lines, open + 1, l => l == "```");
        Assert.True(close > open, $"the {name} example's block is not closed");
        return string.Join('\n', lines[(open + 1)..close]) + "\n";
    }

    /// <summary>The JSON values printed one after another (curl adds no separator; the events stream puts newlines).</summary>
    private static List<JsonElement> JsonValues(string text)
    {
        var reader = new Utf8JsonReader(Encoding.UTF8.GetBytes(text), new JsonReaderOptions { AllowMultipleValues = true });
        var values = new List<JsonElement>();
        while (reader.Read()) values.Add(JsonElement.ParseValue(ref reader));
        return values;
    }
}
