using System.Diagnostics;

namespace RenderFarm.ModelBuilder;

/// <summary>The model builder CLI. A namespaced, internal entry point, so that test projects referencing this assembly
/// next to a web host do not see two global <c>Program</c> types.</summary>
internal static class Program
{
    private const string Usage = """
        RenderFarm model builder: writes Stable Diffusion-architecture ONNX model directories (diffusers ONNX layout)
        with random weights.

        usage:
          modelbuilder create <preset> --out DIR [--seed N] [--force]
          modelbuilder list
          modelbuilder --help
        """;

    private static int Main(string[] args)
    {
        if (args.Length == 0 || args[0] is "--help" or "-h" or "help")
        {
            Console.WriteLine(Usage);
            return args.Length == 0 ? 1 : 0;
        }
        if (args[0] == "list")
        {
            foreach (var p in ModelPresets.Definitions)
                Console.WriteLine($"{p.Name,-20} {p.Description}");
            return 0;
        }
        if (args[0] != "create" || args.Length < 2 || args[1].StartsWith('-'))
            return Fail($"unknown command '{string.Join(' ', args)}'");

        string preset = args[1];
        string? output = null;
        ulong seed = 0;
        bool force = false;
        for (int i = 2; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--out" or "-o" when i + 1 < args.Length: output = args[++i]; break;
                case "--seed" when i + 1 < args.Length:
                    if (!ulong.TryParse(args[++i], out seed))
                        return Fail($"--seed must be a non-negative integer, got '{args[i]}'");
                    break;
                case "--force": force = true; break;
                default: return Fail($"unexpected argument '{args[i]}'");
            }
        }
        if (output is null)
            return Fail("create needs --out DIR");
        if (!ModelPresets.Names.Contains(preset))
            return Fail($"unknown preset '{preset}'; valid: {string.Join(", ", ModelPresets.Names)}");

        using var cts = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; cts.Cancel(); };
        var clock = Stopwatch.StartNew();
        try
        {
            var result = ModelPresets.Write(preset, output, new ModelWriteOptions
            {
                Seed = seed, Force = force, Log = Console.WriteLine, CancellationToken = cts.Token,
            });
            long total = result.Components.Sum(c => c.Parameters);
            Console.WriteLine($"wrote {preset} (seed {seed}) to {result.Directory}: {total:N0} parameters in {clock.Elapsed.TotalSeconds:F1} s");
            return 0;
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("cancelled; nothing was written");
            return 130;
        }
        catch (IOException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    private static int Fail(string message)
    {
        Console.Error.WriteLine($"error: {message}\n\n{Usage}");
        return 2;
    }
}
