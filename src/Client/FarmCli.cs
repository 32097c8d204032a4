using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.CommandLine;
using RenderFarm.Client.Cli;
using RenderFarm.Client.Commands;

namespace RenderFarm.Client;

/// <summary>
/// The <c>farm</c> command line, invocable in-process: parse, run, and return the exit code (see
/// <see cref="ExitCodes"/>). Output goes only to the given writers; a writer that is not the real console is
/// treated as non-interactive, so output is plain lines.
/// </summary>
public static class FarmCli
{
    public static Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken cancellationToken = default) =>
        RunAsync(args, FarmCliHost.ForWriters(stdout, stderr), cancellationToken);

    public static async Task<int> RunAsync(string[] args, FarmCliHost host, CancellationToken cancellationToken = default)
    {
        var root = BuildRootCommand(host);
        var parseResult = root.Parse(args);
        if (parseResult.Action is ParseErrorAction)
        {
            return ReportParseErrors(parseResult, host);
        }

        var configuration = new InvocationConfiguration
        {
            Output = host.Out,
            Error = host.Error,
            EnableDefaultExceptionHandler = false, // every command reports its own failures (CommandContext.RunAsync)
            ProcessTerminationTimeout = null,      // Ctrl-C is the caller's cancellation token, not a global handler
        };
        return await parseResult.InvokeAsync(configuration, cancellationToken);
    }

    public static RootCommand BuildRootCommand(FarmCliHost host)
    {
        var globals = new GlobalOptions();
        var root = new RootCommand(
            "farm — submit Stable Diffusion batches to a RenderFarm coordinator, follow them, and download the images.\n\n" +
            "Example session:\n" +
            "  id=$(farm submit prompts.txt --seeds 1,2,3 | tail -1)\n" +
            "  farm watch \"$id\"\n" +
            "  farm pull \"$id\" --out results/\n\n" +
            "Exit codes: 0 ok, 1 job finished with failures or operation failed, 2 usage or input error, " +
            "3 coordinator unreachable, 4 not found.")
        {
            globals.Coordinator,
            globals.ApiKey,
            SubmitCommand.Create(host, globals),
            WatchCommand.Create(host, globals),
            StatusCommand.Create(host, globals),
            PullCommand.Create(host, globals),
            JobsCommand.Create(host, globals),
            CancelCommand.Create(host, globals),
            PauseCommand.Create(host, globals),
            ResumeCommand.Create(host, globals),
            RetryCommand.Create(host, globals),
            PriorityCommand.Create(host, globals),
            DeleteCommand.Create(host, globals),
            WorkersCommand.Create(host, globals),
            ModelsCommand.Create(host, globals),
            ConfigCommand.Create(host, globals),
        };
        ShortenCommandListing(root);
        return root;
    }

    // In the root's command list show each command's first line; its full description (with examples) stays in
    // `farm COMMAND --help`. (HelpBuilder is internal in System.CommandLine 3.0, hence the swap around the default.)
    private static void ShortenCommandListing(RootCommand root)
    {
        if (root.Options.OfType<HelpOption>().FirstOrDefault() is { Action: HelpAction defaultHelp } helpOption)
        {
            helpOption.Action = new ShortListingHelpAction(root, defaultHelp);
        }
    }

    private sealed class ShortListingHelpAction(RootCommand root, HelpAction inner) : SynchronousCommandLineAction
    {
        public override bool ClearsParseErrors => true;

        public override int Invoke(ParseResult parseResult)
        {
            if (parseResult.CommandResult.Command != root)
            {
                return inner.Invoke(parseResult);
            }

            var full = root.Subcommands.ToDictionary(c => c, c => c.Description);
            try
            {
                foreach (var command in root.Subcommands)
                {
                    command.Description = (command.Description ?? "").Split('\n')[0];
                }

                return inner.Invoke(parseResult);
            }
            finally
            {
                foreach (var (command, description) in full)
                {
                    command.Description = description;
                }
            }
        }
    }

    private static int ReportParseErrors(ParseResult parseResult, FarmCliHost host)
    {
        foreach (var error in parseResult.Errors)
        {
            host.Error.WriteLine("error: " + error.Message);
        }

        var command = parseResult.CommandResult.Command;
        var helpTarget = command is RootCommand ? "farm --help" : $"farm {command.Name} --help";
        host.Error.WriteLine($"run '{helpTarget}' for usage");
        host.Error.Flush();
        return ExitCodes.UsageError;
    }
}
