namespace RenderFarm.Client.Pull;

/// <summary>What <c>farm pull</c> reports while it runs. Called from parallel writers: implementations are thread-safe.</summary>
public interface IPullProgress
{
    /// <summary>An image was verified and saved under <paramref name="name"/>.</summary>
    void Saved(string name, long bytes);

    /// <summary>A one-line notice (a resumed stream, a fallback from the store's URLs).</summary>
    void Notice(string line);
}
