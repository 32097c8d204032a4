using RenderFarm.FarmState;
using RenderFarm.FarmState.Jobs;
using RenderFarm.FarmState.Retention;
using RenderFarm.FarmState.TaskStreams;
using RenderFarm.FarmState.Workers;
using RenderFarm.Protocol;

namespace RenderFarm.FarmState.Tests;

/// <summary>The schema's scripts and constants, without Redis (the task-stream tests beside it run them on a real one).</summary>
public sealed class FarmScriptTests
{
    private static readonly FarmScript[] All =
    [
        JobScripts.RecordOutcome, JobScripts.MarkRunning, JobScripts.Cancel, JobScripts.ReopenForRetry, JobScripts.Pause,
        JobScripts.Resume, JobScripts.AppendEvent, JobScripts.AppendProgress, JobScripts.RecordFailedAttempt, JobScripts.SetPriority,
        TaskStreamScripts.ClaimIfOwner, TaskStreamScripts.TakeOver, TaskStreamScripts.Admit, TaskStreamScripts.Enqueue, TaskStreamScripts.EnqueueOnce,
        TaskStreamScripts.Claim, TaskStreamScripts.Acknowledge, TaskStreamScripts.Withdraw, TaskStreamScripts.Move,
        TaskStreamScripts.ForgetIdleConsumers, TaskStreamScripts.StartPrefetched, TaskStreamScripts.WorkAhead, TaskStreamScripts.ForgetLegacyWarm,
        JobScripts.ExpireResults, JobScripts.ExpireInputs, PreviewScripts.Store, PreviewScripts.Drop, DueWorkScripts.ClaimDue,
        WorkerScripts.ClaimId, JobScripts.DeleteRecordsIfEndedAt, Webhooks.WebhookScripts.ChangeIfUnchanged, JobScripts.Create,
        JobScripts.ClaimResultChecks, JobScripts.ReleaseResultChecks,
        FarmState.Commits.CommitScripts.Begin, FarmState.Commits.CommitScripts.Renew, FarmState.Commits.CommitScripts.Complete, FarmState.Commits.CommitScripts.ClaimStale,
        FarmState.Commits.CommitScripts.Fence, TaskStreamScripts.NoteJobStreams,
    ];

    [Fact]
    public void AScriptReadsItsKeysAndArgumentsAsLocalsOfTheDeclaredNames()
    {
        var script = new FarmScript("example", ["meta", "events"], ["now"], "return now");

        Assert.Equal("-- example\nlocal meta = KEYS[1]\nlocal events = KEYS[2]\nlocal now = ARGV[1]\nreturn now", script.Source);
    }

    [Fact]
    public async Task AScriptRefusesKeysOrArgumentsOtherThanItDeclares()
    {
        var keys = await Assert.ThrowsAsync<ArgumentException>(() => JobScripts.Pause.EvaluateAsync(null!, ["only-meta"]));
        Assert.Contains("takes 2 keys (meta, events), not 1", keys.Message);
        var args = await Assert.ThrowsAsync<ArgumentException>(() => JobScripts.Cancel.EvaluateAsync(null!, ["m", "e", "p", "i", "r", "l"]));
        Assert.Contains("at least 1 arguments (now)", args.Message);
        // One that takes a list of keys past those it names still needs those.
        var none = await Assert.ThrowsAsync<ArgumentException>(() => JobScripts.DeleteRecordsIfEndedAt.EvaluateAsync(null!, [], ""));
        Assert.Contains("takes at least 1 keys (meta), not 0", none.Message);
    }

    [Fact]
    public void EveryScriptHasANameAndDistinctParameters()
    {
        Assert.Equal(All.Length, All.Select(s => s.Name).Distinct().Count());
        Assert.All(All, s => Assert.Equal(s.Keys.Count + s.Args.Count, s.Keys.Concat(s.Args).Distinct().Count()));
    }

    [Fact]
    public void EveryStoredJobStateHasItsApiStateAndTheUnfinishedOnesAreQueuedRunningPaused()
    {
        string[] states = [JobStates.Queued, JobStates.Running, JobStates.Paused, JobStates.Completed, JobStates.Failed, JobStates.Cancelled];
        Assert.DoesNotContain(JobState.Unspecified, states.Select(JobStates.ToProto));
        Assert.Equal(states.Length, states.Select(JobStates.ToProto).Distinct().Count());
        Assert.Equal([JobStates.Queued, JobStates.Running, JobStates.Paused], states.Where(JobStates.Unfinished.Contains));
        Assert.Equal(JobState.Unspecified, JobStates.ToProto("written by a newer coordinator"));
    }

    [Fact]
    public void NoFixedKeyIsInAPerModelFamilyWhereSomeModelsKeyWouldBe()
    {
        // Model names are letters, digits, '.', '_', '-': "tasks:warm" was the normal-priority stream of a model "warm".
        var fixedKeys = typeof(FarmKeys).GetFields(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static)
            .Where(f => f.IsLiteral && f.FieldType == typeof(string) && !f.Name.StartsWith("Legacy", StringComparison.Ordinal))
            .Select(f => (string)f.GetRawConstantValue()!).ToList();

        Assert.Contains(FarmKeys.WarmVariants, fixedKeys);
        Assert.All(fixedKeys, key =>
        {
            Assert.Null(FarmKeys.ParseTaskStream(key));
            Assert.False(key.StartsWith("{tasks:", StringComparison.Ordinal) || key.StartsWith(FarmKeys.RenderRates(""), StringComparison.Ordinal), key);
        });
    }
}
