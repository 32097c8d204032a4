namespace RenderFarm.Farm.Tests.Infrastructure;

/// <summary>
/// Waits for a condition that the farm reaches on its own (a webhook delivered, a worker's counters caught up): polled,
/// because there is no event to await, and bounded, so that a broken run fails with what it waited for.
/// </summary>
public static class Eventually
{
    /// <summary>Waits (up to a minute) until <paramref name="condition"/> holds; fails the test naming <paramref name="what"/>.</summary>
    public static async Task HoldsAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddMinutes(1);
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for {what}");
            await Task.Delay(50);
        }
    }
}
