using System.Diagnostics;

namespace RenderFarm.ModelBuilder;

/// <summary>
/// The model builder's command line (<c>list</c>, <c>create</c>), over the given writers so tests run it in-process.
/// Exit codes: 0 success, 1 the directory could not be written (e.g. not empty without --force), 2 usage error,
/// 130 cancelled.
/// </summary>
internal static class ModelBuilderCli
{
    public const string Usage = """
        RenderFarm model builder: writes Stable Diffusion-architecture ONNX model directories (diffusers ONNX layout)
        with random weights.

        usage:
          modelbuilder create <preset> --out DIR [--seed N] [--force]
          modelbuilder list
          modelbuilder --help
        """;

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken cancellationToken)
    {
        if (args.Length == 0 || args[0] is "--help" or "-h" or "help")
        {
            stdout.WriteLine(Usage);
            return args.Length == 0 ? 1 : 0;
        }
        if (args[0] == "list")
        {
            foreach (var p in ModelPresets.Definitions)
                stdout.WriteLine($"{p.Name,-20} {p.Description}");
            return 0;
        }
        if (args[0] != "create" || args.Length < 2 || args[1].StartsWith('-'))
            return Fail(stderr, $"unknown command '{string.Join(' ', args)}'");

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
                        return Fail(stderr, $"--seed must be a non-negative integer, got '{args[i]}'");
                    break;
                case "--force": force = true; break;
                default: return Fail(stderr, $"unexpected argument '{args[i]}'");
            }
        }
        if (output is null)
            return Fail(stderr, "create needs --out DIR");
        if (!ModelPresets.Names.Contains(preset))
            return Fail(stderr, $"unknown preset '{preset}'; valid: {string.Join(", ", ModelPresets.Names)}");

        var clock = Stopwatch.StartNew();
        try
        {
            var result = ModelPresets.Write(preset, output, new ModelWriteOptions
            {
                Seed = seed, Force = force, Log = stdout.WriteLine, CancellationToken = cancellationToken,
            });
            long total = result.Components.Sum(c => c.Parameters);
            stdout.WriteLine($"wrote {preset} (seed {seed}) to {result.Directory}: {total:N0} parameters in {clock.Elapsed.TotalSeconds:F1} s");
            return 0;
        }
        catch (OperationCanceledException)
        {
            stderr.WriteLine("cancelled; nothing was written");
            return 130;
        }
        catch (IOException e)
        {
            stderr.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    private static int Fail(TextWriter stderr, string message)
    {
        stderr.WriteLine($"error: {message}\n\n{Usage}");
        return 2;
    }
}
