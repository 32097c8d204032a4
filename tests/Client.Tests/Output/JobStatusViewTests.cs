using System.Text.Json;
using RenderFarm.Client.Output;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Tests.Output;

public class JobStatusViewTests
{
    private static JobStatus Sample(JobState state = JobState.Running, long finished = 0) => new()
    {
        JobId = "job-42",
        State = state,
        Params = new GenerationParams { Model = "sd15", Width = 512, Height = 768, Steps = 30, GuidanceScale = 7.5f, Scheduler = "euler" },
        ImageCount = 24,
        ImagesDone = 12,
        ImagesFailed = 1,
        ShardCount = 6,
        ShardsDone = 3,
        CreatedUnixMs = 1_700_000_000_123,
        FinishedUnixMs = finished,
        Label = "cats \"v2\"",
    };

    [Fact]
    public void JsonHasTheStableSnakeCaseShape()
    {
        var json = JobStatusView.Json(Sample());
        using var document = JsonDocument.Parse(json);
        var root = document.RootElement;

        Assert.Equal(
            ["job_id", "state", "image_count", "images_done", "images_failed", "shard_count", "shards_done", "created", "finished", "params", "label", "priority", "note",
             "device_seconds", "device_seconds_per_image", "cost", "estimated_completion", "webhook"],
            root.EnumerateObject().Select(p => p.Name));
        Assert.Equal(["model", "width", "height", "steps", "guidance_scale", "scheduler", "refiner", "refiner_start"], root.GetProperty("params").EnumerateObject().Select(p => p.Name));
        Assert.Equal("running", root.GetProperty("state").GetString());
        Assert.Equal(24, root.GetProperty("image_count").GetInt32());
        Assert.Equal("2023-11-14T22:13:20.123Z", root.GetProperty("created").GetString());
        Assert.Equal(JsonValueKind.Null, root.GetProperty("finished").ValueKind);
        Assert.Equal(7.5, root.GetProperty("params").GetProperty("guidance_scale").GetDouble());
        Assert.Equal("cats \"v2\"", root.GetProperty("label").GetString());
        Assert.DoesNotContain('\n', json);
    }

    [Theory]
    [InlineData(JobState.Queued, "queued")]
    [InlineData(JobState.Running, "running")]
    [InlineData(JobState.Completed, "completed")]
    [InlineData(JobState.Failed, "failed")]
    [InlineData(JobState.Cancelled, "cancelled")]
    public void StatesAreLowerCaseWords(JobState state, string expected)
    {
        using var document = JsonDocument.Parse(JobStatusView.Json(Sample(state)));
        Assert.Equal(expected, document.RootElement.GetProperty("state").GetString());
    }

    [Fact]
    public void GuidanceScaleIsWrittenWithoutFloatNoise()
    {
        var status = Sample();
        status.Params.GuidanceScale = 0.1f;
        Assert.Contains("\"guidance_scale\":0.1,", JobStatusView.Json(status));
    }

    [Fact]
    public void ABaseAndRefinerJobShowsItsRefinerAndSwitch()
    {
        var status = Sample();
        (status.Params.Refiner, status.Params.RefinerStart) = ("sdxl-refiner", 0.8f);

        Assert.Contains("model     sd15, refiner sdxl-refiner at 0.8\n", JobStatusView.Table(status));
        Assert.Contains("\"scheduler\":\"euler\",\"refiner\":\"sdxl-refiner\",\"refiner_start\":0.8}", JobStatusView.Json(status));
        Assert.Contains("\"refiner\":\"\",\"refiner_start\":0}", JobStatusView.Json(Sample()));
        Assert.Equal("sd15", JobStatusView.ModelText(Sample().Params));
    }

    [Fact]
    public void TableShowsCountsAndTimes()
    {
        var table = JobStatusView.Table(Sample(JobState.Completed, finished: 1_700_000_060_000));

        Assert.Contains("state     completed", table);
        Assert.Contains("images    12/24 done, 1 failed", table);
        Assert.Contains("512x768, 30 steps, guidance 7.5, euler scheduler", table);
        Assert.Contains("finished  2023-11-14T22:14:20.000Z", table);
        Assert.Contains("device    0 s, 0 s/image\n", table);
    }

    [Fact]
    public void DeviceTimeIsShownPerJobAndPerImageWithTheCostWhenPriced()
    {
        var status = Sample();
        status.DeviceSeconds = 30;
        Assert.Contains("device    30 s, 2.5 s/image\n", JobStatusView.Table(status));
        status.Cost = 0.0125;
        Assert.Contains("device    30 s, 2.5 s/image, cost 0.0125\n", JobStatusView.Table(status));
        using var document = JsonDocument.Parse(JobStatusView.Json(status));
        Assert.Equal(30, document.RootElement.GetProperty("device_seconds").GetDouble());
        Assert.Equal(2.5, document.RootElement.GetProperty("device_seconds_per_image").GetDouble());
        Assert.Equal(0.0125, document.RootElement.GetProperty("cost").GetDouble());
    }

    [Fact]
    public void AnEstimatedCompletionIsShownOnlyWhenThereIsOne()
    {
        var status = Sample();
        Assert.DoesNotContain("estimate", JobStatusView.Table(status));
        Assert.Contains("\"estimated_completion\":null", JobStatusView.Json(status));
        status.EstimatedCompletionUnixMs = 1_700_000_090_000;
        Assert.Contains("estimate  2023-11-14T22:14:50.000Z", JobStatusView.Table(status));
        Assert.Contains("\"estimated_completion\":\"2023-11-14T22:14:50.000Z\"", JobStatusView.Json(status));
    }
}
