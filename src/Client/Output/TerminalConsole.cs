using Spectre.Console;

namespace RenderFarm.Client.Output;

/// <summary>A Spectre console for live views (watch, pull progress) over a writer the caller knows is a terminal.</summary>
public static class TerminalConsole
{
    public static IAnsiConsole Create(TextWriter terminal) => AnsiConsole.Create(new AnsiConsoleSettings
    {
        Out = new AnsiConsoleOutput(terminal),
        Ansi = AnsiSupport.Yes, // the caller established this writer is a terminal
        ColorSystem = ColorSystemSupport.Detect,
        Interactive = InteractionSupport.Yes,
    });
}
