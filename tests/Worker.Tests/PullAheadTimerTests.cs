using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace RenderFarm.Worker.Tests;

/// <summary>
/// The next shard is claimed shortly before the device needs it, not a whole render ahead, so the fair queue decides
/// which tenant gets the device as late as it can (issue 21: a small job behind a huge one starts within a shard).
/// </summary>
public sealed class PullAheadTimerTests
{
    private static PullAheadTimer Timer(FakeTimeProvider time, int leadMs = 250) =>
        new(Options.Create(new WorkerOptions { PullAheadMilliseconds = leadMs }), time);

    [Fact]
    public void TheDeviceIsNeededWhenFreeAndOtherwiseAfterTheRunningRendersStepsLeft()
    {
        var time = new FakeTimeProvider();
        var timer = Timer(time);
        Assert.Equal(TimeSpan.Zero, timer.UntilNeeded(waiting: 0));

        timer.RenderStarted();
        time.Advance(TimeSpan.FromSeconds(4));
        timer.Stepped(2, 10); // 2 s a step so far, 8 steps left
        Assert.Equal(TimeSpan.FromSeconds(16), timer.UntilNeeded(waiting: 0));
        timer.RenderEnded(); // the render took 4 s

        timer.RenderStarted();
        time.Advance(TimeSpan.FromSeconds(1));
        // No step yet: a whole render (the last one's length) is assumed; a shard waiting ahead adds one more.
        Assert.Equal(TimeSpan.FromSeconds(3), timer.UntilNeeded(waiting: 0));
        Assert.Equal(TimeSpan.FromSeconds(7), timer.UntilNeeded(waiting: 1));
    }

    [Fact]
    public async Task APullWaitsUntilTheRenderIsWithinTheLeadOfItsEndAndGoesAtOnceWhenTheDeviceIsFree()
    {
        var time = new FakeTimeProvider();
        var timer = Timer(time);
        await timer.WaitUntilDueAsync(() => 0, CancellationToken.None); // nothing rendering: at once

        timer.RenderStarted();
        time.Advance(TimeSpan.FromSeconds(1));
        timer.Stepped(1, 20); // 19 s left
        var pull = timer.WaitUntilDueAsync(() => 0, CancellationToken.None);
        Assert.False(pull.IsCompleted);

        time.Advance(TimeSpan.FromSeconds(17));
        timer.Stepped(18, 20); // 2 s left: still more than the lead
        Assert.False(pull.IsCompleted);

        timer.Stepped(19, 20); // the last step: due whatever the estimate
        await pull.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task APullIsDueByTheEstimateAloneAndWhenTheRenderEnds()
    {
        var time = new FakeTimeProvider();
        var timer = Timer(time);
        timer.RenderStarted();
        time.Advance(TimeSpan.FromSeconds(1));
        timer.Stepped(1, 10); // 9 s left
        var byEstimate = timer.WaitUntilDueAsync(() => 0, CancellationToken.None);
        time.Advance(TimeSpan.FromSeconds(8.5));
        Assert.False(byEstimate.IsCompleted);
        time.Advance(TimeSpan.FromSeconds(0.3)); // 0.2 s before the estimated end, with no step reported meanwhile
        await byEstimate.WaitAsync(TimeSpan.FromSeconds(10));

        var byEnd = timer.WaitUntilDueAsync(() => 0, CancellationToken.None);
        timer.Stepped(2, 1000); // a far longer render than estimated
        timer.RenderEnded(); // but it ended
        await byEnd.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task ZeroPullsAsSoonAsThereIsAPlace()
    {
        var time = new FakeTimeProvider();
        var timer = Timer(time, leadMs: 0);
        timer.RenderStarted();
        timer.Stepped(1, 1000);
        await timer.WaitUntilDueAsync(() => 0, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10));
    }
}
