using System.Globalization;
using System.Text.RegularExpressions;

namespace RenderFarm.Farm.Tests.Infrastructure;

/// <summary>One scrape of a Prometheus text endpoint, with sums of a metric's samples over label matches.</summary>
public sealed partial class PrometheusScrape(string text)
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    public string Text { get; } = text;

    /// <summary>GETs <c>/metrics</c> over HTTP/1.1, as Prometheus does.</summary>
    public static async Task<PrometheusScrape> FetchAsync(int port) =>
        new(await Http.GetStringAsync($"http://127.0.0.1:{port}/metrics"));

    /// <summary>Scrapes until <paramref name="condition"/> holds (gauges are sampled, not read at the scrape), up to a minute.</summary>
    public static async Task<PrometheusScrape> WaitForAsync(int port, Func<PrometheusScrape, bool> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddMinutes(1);
        while (true)
        {
            var scrape = await FetchAsync(port);
            if (condition(scrape)) return scrape;
            Assert.True(DateTime.UtcNow < deadline, $"metrics never showed {what}:\n{scrape.Text}");
            await Task.Delay(100);
        }
    }

    /// <summary>The samples of <paramref name="metric"/> whose labels include every one of <paramref name="labels"/>.</summary>
    public IEnumerable<double> Samples(string metric, params (string Name, string Value)[] labels)
    {
        foreach (var line in Text.Split('\n'))
        {
            var match = SampleLine().Match(line);
            if (!match.Success || match.Groups["name"].Value != metric) continue;
            var present = LabelPair().Matches(match.Groups["labels"].Value).ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value);
            if (labels.All(l => present.GetValueOrDefault(l.Name) == l.Value))
                yield return double.Parse(match.Groups["value"].Value, CultureInfo.InvariantCulture);
        }
    }

    public bool Has(string metric, params (string Name, string Value)[] labels) => Samples(metric, labels).Any();

    public double Sum(string metric, params (string Name, string Value)[] labels) => Samples(metric, labels).Sum();

    [GeneratedRegex(@"^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?<labels>.*)\})? (?<value>\S+)")]
    private static partial Regex SampleLine();

    [GeneratedRegex("([a-zA-Z_][a-zA-Z0-9_]*)=\"((?:[^\"\\\\]|\\\\.)*)\"")]
    private static partial Regex LabelPair();
}
