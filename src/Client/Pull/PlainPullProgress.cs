namespace RenderFarm.Client.Pull;

/// <summary>For pipes and logs: <c>saved NAME</c> per image (none with <c>--json</c>), notices on stderr.</summary>
public sealed class PlainPullProgress(TextWriter? savedLines, TextWriter notices) : IPullProgress
{
    private readonly Lock _lock = new();

    public void Saved(string name, long bytes)
    {
        if (savedLines is not null)
        {
            lock (_lock)
            {
                savedLines.WriteLine($"saved {name}");
            }
        }
    }

    public void Notice(string line)
    {
        lock (_lock)
        {
            notices.WriteLine(line);
        }
    }
}
