using System.Net;
using System.Text.Json;
using Grpc.Core;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;

namespace RenderFarm.Farm.Tests;

/// <summary>
/// ListJobs pages on the server: page tokens walk a tenant's jobs newest first without gaps or repeats, a page already
/// handed out does not shift when jobs are submitted, a state filter examines a bounded number of jobs per call (set
/// low here, 120, so 255 jobs are "many"), and the HTTP route the dashboard calls pages alike. No worker: the jobs stay queued.
/// </summary>
public sealed class JobListingTests(JobListingTests.ListingFarm fixture) : IClassFixture<JobListingTests.ListingFarm>
{
    public const int Examined = 120;

    public sealed class ListingFarm : IAsyncLifetime
    {
        public FarmCluster Cluster { get; private set; } = null!;
        public List<string> Submitted { get; } = [];

        public async Task InitializeAsync()
        {
            Cluster = await FarmCluster.StartAsync(workers: 0, configure: s =>
            {
                s["Farm:ListJobsExaminedPerPage"] = Examined.ToString();
                s["Farm:Limits:MaxActiveJobsPerTenant"] = "1000"; // every job stays queued
                s["Farm:Limits:SubmitsPerMinutePerTenant"] = "1000";
            });
            for (var i = 0; i < 250; i++)
                Submitted.Add((await Cluster.SubmitAsync(Header($"listed-{i}"), [new PromptItem { Prompt = "a quiet harbour" }])).JobId);
        }

        public async Task DisposeAsync() => await Cluster.DisposeAsync();
    }

    private static JobHeader Header(string label) => new()
    {
        Label = label,
        Params = new GenerationParams { Width = 64, Height = 64, Steps = 2, GuidanceScale = 7f },
        Seeds = { 1 },
    };

    private JobService.JobServiceClient Jobs => fixture.Cluster.Jobs;

    /// <summary>Every page from <paramref name="request"/>'s start to the end of the listing.</summary>
    private async Task<List<ListJobsResponse>> AllPagesAsync(ListJobsRequest request)
    {
        var pages = new List<ListJobsResponse>();
        do
        {
            var page = await Jobs.ListJobsAsync(request);
            pages.Add(page);
            request = new ListJobsRequest(request) { PageToken = page.NextPageToken };
        }
        while (request.PageToken.Length > 0 && pages.Count < 100);
        return pages;
    }

    [Fact]
    public async Task PagesWalkEveryJobNewestFirstOnceAndStayPutWhenJobsAreSubmitted()
    {
        var pages = await AllPagesAsync(new ListJobsRequest { Limit = 100 });
        var listed = pages.SelectMany(p => p.Jobs).ToList();
        Assert.All(pages, p => Assert.True(p.Jobs.Count <= 100));
        Assert.Equal(listed.Count, listed.Select(j => j.JobId).Distinct().Count());
        Assert.Superset(fixture.Submitted.ToHashSet(), listed.Select(j => j.JobId).ToHashSet());
        Assert.Equal(listed.Select(j => j.CreatedUnixMs).OrderDescending(), listed.Select(j => j.CreatedUnixMs));
        Assert.True(pages[0].TotalJobs >= 250);
        Assert.Empty(pages[^1].NextPageToken);

        // Jobs submitted after the first page was handed out go to the top, not into the pages after it.
        var first = await Jobs.ListJobsAsync(new ListJobsRequest { Limit = 100 });
        var second = await Jobs.ListJobsAsync(new ListJobsRequest { Limit = 100, PageToken = first.NextPageToken });
        var newer = await fixture.Cluster.SubmitAsync(Header("newer"), [new PromptItem { Prompt = "a later harbour" }]);
        var again = await Jobs.ListJobsAsync(new ListJobsRequest { Limit = 100, PageToken = first.NextPageToken });
        Assert.Equal(second.Jobs.Select(j => j.JobId), again.Jobs.Select(j => j.JobId));
        Assert.Equal(newer.JobId, (await Jobs.ListJobsAsync(new ListJobsRequest { Limit = 1 })).Jobs.Single().JobId);
    }

    [Fact]
    public async Task AStateFilterExaminesABoundedNumberOfJobsPerCallAndStillFindsEveryMatch()
    {
        // The three oldest jobs, at the far end of the listing: reaching them takes several calls.
        var cancelled = fixture.Submitted.Take(3).ToHashSet();
        foreach (var id in cancelled) await Jobs.CancelJobAsync(new CancelJobRequest { JobId = id });

        var pages = await AllPagesAsync(new ListJobsRequest { Limit = 10, States = { JobState.Cancelled } });
        Assert.Equal(cancelled, pages.SelectMany(p => p.Jobs).Select(j => j.JobId).ToHashSet());
        Assert.All(pages.SelectMany(p => p.Jobs), j => Assert.Equal(JobState.Cancelled, j.State));
        Assert.True(pages.Count >= 3, $"{pages.Count} calls: each examines at most {Examined} of 250+ jobs");
        Assert.Contains(pages, p => p.Jobs.Count == 0 && p.NextPageToken.Length > 0); // a short page that goes on
    }

    [Fact]
    public async Task TheHttpRouteTakesAndHandsOutPageTokensAndRefusesForgedOnes()
    {
        using var http = new HttpClient { DefaultRequestVersion = HttpVersion.Version20, DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact };
        var url = fixture.Cluster.CoordinatorUrl;
        using var firstDoc = JsonDocument.Parse(await http.GetStringAsync($"{url}/v1/jobs?limit=2"));
        var token = firstDoc.RootElement.GetProperty("nextPageToken").GetString()!;
        Assert.Equal(2, firstDoc.RootElement.GetProperty("jobs").GetArrayLength());
        using var secondDoc = JsonDocument.Parse(await http.GetStringAsync($"{url}/v1/jobs?limit=2&pageToken={Uri.EscapeDataString(token)}"));
        var expected = await Jobs.ListJobsAsync(new ListJobsRequest { Limit = 2, PageToken = token });
        Assert.Equal(expected.Jobs.Select(j => j.JobId), secondDoc.RootElement.GetProperty("jobs").EnumerateArray().Select(j => j.GetProperty("jobId").GetString()));

        // The state filter as the dashboard sends it: an enum name in the query.
        using var queuedDoc = JsonDocument.Parse(await http.GetStringAsync($"{url}/v1/jobs?limit=10&states=JOB_STATE_QUEUED"));
        var queued = queuedDoc.RootElement.GetProperty("jobs").EnumerateArray().Select(j => j.GetProperty("state").GetString()).ToList();
        Assert.Equal(10, queued.Count);
        Assert.All(queued, state => Assert.Equal("JOB_STATE_QUEUED", state));

        using var forged = await http.GetAsync($"{url}/v1/jobs?pageToken=not-a-token");
        Assert.Equal(HttpStatusCode.BadRequest, forged.StatusCode);
        var error = await Assert.ThrowsAsync<RpcException>(() => Jobs.ListJobsAsync(new ListJobsRequest { PageToken = "12.nope" }).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
        Assert.Contains("page_token", error.Status.Detail);
    }

    [Fact]
    public async Task FarmJobsFollowsPagesToItsLimitAndSaysHowToGoOn()
    {
        async Task<(int Exit, string Out, string Err)> FarmAsync(params string[] args)
        {
            var (stdout, stderr) = (new StringWriter(), new StringWriter());
            var exit = await RenderFarm.Client.FarmCli.RunAsync(["--coordinator", fixture.Cluster.CoordinatorUrl, .. args], stdout, stderr, CancellationToken.None);
            return (exit, stdout.ToString(), stderr.ToString());
        }
        static List<string> Ids(string json) => JsonDocument.Parse(json).RootElement.EnumerateArray().Select(j => j.GetProperty("job_id").GetString()!).ToList();

        // Every job, over several calls (each examines at most 120), in one array and nothing said about more.
        var all = await FarmAsync("jobs", "--limit", "100000", "--json");
        Assert.True(all.Exit == 0, all.Err);
        var ids = Ids(all.Out);
        Assert.Equal(ids.Count, ids.Distinct().Count());
        Assert.Superset(fixture.Submitted.ToHashSet(), ids.ToHashSet()); // (subset, actual)
        Assert.DoesNotContain("--page-token", all.Err);

        var head = await FarmAsync("jobs", "--limit", "130", "--json");
        Assert.Equal(ids.Take(130), Ids(head.Out));
        var token = head.Err.Trim().Split(' ')[^1];
        var rest = await FarmAsync("jobs", "--limit", "100000", "--json", "--page-token", token);
        Assert.Equal(ids.Skip(130), Ids(rest.Out));
    }
}
