using Microsoft.Extensions.Time.Testing;
using RenderFarm.Worker.Health;

namespace RenderFarm.Worker.Tests;

/// <summary>
/// Liveness progress: polls count while idle, but while a render is in flight (the puller polls ahead for the next
/// shard) only the render's own steps do, so a render stuck in a step is seen.
/// </summary>
public sealed class WorkerActivityTests
{
    [Fact]
    public void PollsAreProgressOnlyWhileNothingRenders()
    {
        var time = new FakeTimeProvider();
        var activity = new WorkerActivity(time);

        time.Advance(TimeSpan.FromMinutes(1));
        activity.Polled();
        Assert.Equal(TimeSpan.Zero, activity.SinceLast);

        var rendering = activity.Rendering();
        time.Advance(TimeSpan.FromMinutes(5));
        activity.Polled();
        Assert.Equal(TimeSpan.FromMinutes(5), activity.SinceLast);

        activity.Touch(); // a step
        Assert.Equal(TimeSpan.Zero, activity.SinceLast);

        rendering.Dispose();
        rendering.Dispose(); // once only: a second dispose must not end another render's scope
        time.Advance(TimeSpan.FromMinutes(2));
        activity.Polled();
        Assert.Equal(TimeSpan.Zero, activity.SinceLast);
    }

    [Fact]
    public void PollsStayIgnoredUntilEveryRenderInFlightHasEnded()
    {
        var time = new FakeTimeProvider();
        var activity = new WorkerActivity(time);
        var first = activity.Rendering();
        var second = activity.Rendering();
        first.Dispose();
        time.Advance(TimeSpan.FromMinutes(3));
        activity.Polled();
        Assert.Equal(TimeSpan.FromMinutes(3), activity.SinceLast);
        second.Dispose();
        Assert.Equal(TimeSpan.Zero, activity.SinceLast);
    }

    [Fact]
    public void WaitingToBeAdmittedIsLiveWhileNothingRendersAndLeavingItIsAPoll()
    {
        var time = new FakeTimeProvider();
        var activity = new WorkerActivity(time);
        var waiting = activity.AwaitingAdmission();
        time.Advance(TimeSpan.FromHours(1));
        Assert.True(activity.IsAwaitingAdmission);

        // A render in flight meanwhile: only its steps count, so a stuck one is still seen.
        using (activity.Rendering()) Assert.False(activity.IsAwaitingAdmission);

        time.Advance(TimeSpan.FromMinutes(1));
        waiting.Dispose();
        Assert.False(activity.IsAwaitingAdmission);
        Assert.Equal(TimeSpan.Zero, activity.SinceLast);
    }
}
