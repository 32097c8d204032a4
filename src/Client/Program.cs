using RenderFarm.Client;

// First Ctrl-C cancels the command cleanly (streams closed, partial files removed); a second one kills the process.
using var cancellation = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    if (!cancellation.IsCancellationRequested)
    {
        e.Cancel = true;
        cancellation.Cancel();
    }
};

using var tracing = RenderFarm.Client.Cli.ClientTracing.StartFromEnvironment(); // flushed on dispose, before exit
return await FarmCli.RunAsync(args, Console.Out, Console.Error, cancellation.Token);
