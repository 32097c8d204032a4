namespace RenderFarm.ModelBuilder;

/// <summary>The model builder CLI (<see cref="ModelBuilderCli"/>). A namespaced, internal entry point, so that test
/// projects referencing this assembly next to a web host do not see two global <c>Program</c> types.</summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        using var cts = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; cts.Cancel(); };
        return ModelBuilderCli.Run(args, Console.Out, Console.Error, cts.Token);
    }
}
