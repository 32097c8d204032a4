using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace RenderFarm.GpuBench;

/// <summary>Prints as it goes (a run that is cut off still leaves its lines) and collects figures for a JSON file.</summary>
internal sealed class Report(string? jsonPath)
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly JsonObject _figures = [];

    public TimeSpan Elapsed => _clock.Elapsed;

    public void Line(string text) => Console.WriteLine($"[{_clock.Elapsed.TotalSeconds,6:F1}s] {text}");

    public void Set(string key, JsonNode? value)
    {
        _figures[key] = value;
        Save();
    }

    /// <summary>Runs one section; a failure is reported and the run goes on. Returns whether it succeeded.</summary>
    public async Task<bool> Section(string title, Func<Task> body)
    {
        Line($"=== {title}");
        var clock = Stopwatch.StartNew();
        try
        {
            await body();
            Line($"=== {title}: done in {clock.Elapsed.TotalSeconds:F1} s");
            return true;
        }
        catch (Exception ex)
        {
            Line($"=== {title}: FAILED after {clock.Elapsed.TotalSeconds:F1} s: {ex.GetType().Name}: {ex.Message}");
            Console.WriteLine(ex);
            Set($"failed: {title}", ex.Message);
            return false;
        }
    }

    public Task<bool> Section(string title, Action body) => Section(title, () => { body(); return Task.CompletedTask; });

    public void Save()
    {
        if (jsonPath is not null)
        {
            File.WriteAllText(jsonPath, _figures.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        }
    }
}
