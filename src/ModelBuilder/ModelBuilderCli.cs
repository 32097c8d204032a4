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
          modelbuilder create <preset> --out DIR [--seed N] [--force] [--torch-names]
          modelbuilder lora <preset> --out FILE.safetensors [--layout kohya|peft] [--rank N] [--alpha A]
                            [--seed N] [--convs] [--unet-only] [--fp16]
          modelbuilder upscaler <preset> --out DIR [--seed N] [--force]
          modelbuilder controlnet <preset> --out DIR [--seed N] [--force]
          modelbuilder list

        --torch-names  name the graphs as torch.onnx.export does (module-path node names, onnx::MatMul_N weights)
        lora           a LoRA file for the preset's architecture (random low-rank layers on its attention,
                       feed-forward and projection weights; --convs adds the UNet's k×k convs)
        upscaler       an ESRGAN-class upscaler (RRDBNet, Real-ESRGAN's ONNX layout) as DIR/model.onnx: point
                       DIR at a worker's upscaler folder, e.g. /models/upscalers/NAME
        controlnet     a ControlNet for the preset's architecture: DIR/model.onnx (inputs sample, timestep,
                       encoder_hidden_states, controlnet_cond, conditioning_scale; outputs
                       down_block_N_additional_residual, mid_block_additional_residual) and DIR/config.json;
                       put DIR in the workers' Farm:ControlNets folder; SDXL's also takes text_embeds and
                       time_ids. Pair it with a model that has controlnet/model.onnx (presets tiny-control,
                       tiny-sdxl-control)
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
            foreach (var p in Upscalers.UpscalerPresets.Definitions)
                stdout.WriteLine($"{p.Name,-20} (upscaler) {p.Description}");
            return 0;
        }
        if (args.Length >= 2 && args[0] == "upscaler" && !args[1].StartsWith('-'))
            return WriteUpscaler(args, stdout, stderr);
        if (args[0] is not ("create" or "lora" or "controlnet") || args.Length < 2 || args[1].StartsWith('-'))
            return Fail(stderr, $"unknown command '{string.Join(' ', args)}'");
        if (args[0] == "lora")
            return WriteLora(args, stdout, stderr);
        bool controlNet = args[0] == "controlnet";

        string preset = args[1];
        var (output, seed, force, torchNames, error) = ParseWrite(args, torchNamesAllowed: !controlNet);
        if (error is not null)
            return Fail(stderr, error);
        if (!ModelPresets.Names.Contains(preset))
            return Fail(stderr, $"unknown preset '{preset}'; valid: {string.Join(", ", ModelPresets.Names)}");

        var clock = Stopwatch.StartNew();
        try
        {
            if (controlNet)
            {
                var definition = ModelPresets.Get(preset);
                if (definition.ControlNet is null || definition.Refiner)
                    return Fail(stderr, $"preset '{preset}' has no ControlNet (SD 1.x/2.x and SDXL base presets have one)");
                var written = ControlNetWriter.Write(definition, output!, seed, force);
                stdout.WriteLine($"wrote a {preset} ControlNet (seed {seed}) to {written.Folder}: {written.Parameters:N0} parameters, " +
                    $"{ModelDirectoryWriter.FormatBytes(written.Bytes)} in {clock.Elapsed.TotalSeconds:F1} s");
                return 0;
            }
            var result = ModelPresets.Write(preset, output!, new ModelWriteOptions
            {
                Seed = seed, Force = force, TorchExportNames = torchNames, Log = stdout.WriteLine, CancellationToken = cancellationToken,
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

    private static int WriteLora(string[] args, TextWriter stdout, TextWriter stderr)
    {
        string preset = args[1];
        string? output = null;
        var options = new Lora.LoraWriteOptions();
        for (int i = 2; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--out" or "-o" when i + 1 < args.Length: output = args[++i]; break;
                case "--layout" when i + 1 < args.Length:
                    if (!Enum.TryParse<Lora.LoraLayout>(args[++i], ignoreCase: true, out var layout))
                        return Fail(stderr, $"--layout is kohya or peft, not '{args[i]}'");
                    options = options with { Layout = layout };
                    break;
                case "--rank" when i + 1 < args.Length:
                    if (!int.TryParse(args[++i], out var rank) || rank < 1)
                        return Fail(stderr, $"--rank must be a positive integer, got '{args[i]}'");
                    options = options with { Rank = rank };
                    break;
                case "--alpha" when i + 1 < args.Length:
                    if (!float.TryParse(args[++i], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var alpha))
                        return Fail(stderr, $"--alpha must be a number, got '{args[i]}'");
                    options = options with { Alpha = alpha };
                    break;
                case "--seed" when i + 1 < args.Length:
                    if (!ulong.TryParse(args[++i], out var seed))
                        return Fail(stderr, $"--seed must be a non-negative integer, got '{args[i]}'");
                    options = options with { Seed = seed };
                    break;
                case "--convs": options = options with { Convolutions = true }; break;
                case "--unet-only": options = options with { TextEncoders = false }; break;
                case "--fp16": options = options with { Type = Graph.ElementType.Float16 }; break;
                default: return Fail(stderr, $"unexpected argument '{args[i]}'");
            }
        }
        if (output is null)
            return Fail(stderr, "lora needs --out FILE.safetensors");
        if (!ModelPresets.Names.Contains(preset))
            return Fail(stderr, $"unknown preset '{preset}'; valid: {string.Join(", ", ModelPresets.Names)}");
        var modules = Lora.LoraFileWriter.Write(ModelPresets.Get(preset), output, options);
        stdout.WriteLine($"wrote a rank-{options.Rank} {options.Layout} LoRA for {preset} ({modules.Count} layers) to {Path.GetFullPath(output)}");
        return 0;
    }

    private static int WriteUpscaler(string[] args, TextWriter stdout, TextWriter stderr)
    {
        string preset = args[1];
        var (output, seed, force, _, error) = ParseWrite(args, torchNamesAllowed: false);
        if (error is not null)
            return Fail(stderr, error);
        if (!Upscalers.UpscalerPresets.Names.Contains(preset))
            return Fail(stderr, $"unknown upscaler preset '{preset}'; valid: {string.Join(", ", Upscalers.UpscalerPresets.Names)}");
        try
        {
            var path = Upscalers.UpscalerPresets.Write(preset, output!, seed, force);
            stdout.WriteLine($"wrote {preset} (seed {seed}, {Upscalers.UpscalerPresets.CountParameters(preset):N0} parameters) to {path}");
            return 0;
        }
        catch (IOException e)
        {
            stderr.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    /// <summary>The arguments after PRESET that create and upscaler share: --out DIR [--seed N] [--force] (create: [--torch-names]).</summary>
    private static (string? Output, ulong Seed, bool Force, bool TorchNames, string? Error) ParseWrite(string[] args, bool torchNamesAllowed)
    {
        string? output = null;
        ulong seed = 0;
        bool force = false, torchNames = false;
        for (int i = 2; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--torch-names" when torchNamesAllowed: torchNames = true; break;
                case "--out" or "-o" when i + 1 < args.Length: output = args[++i]; break;
                case "--seed" when i + 1 < args.Length:
                    if (!ulong.TryParse(args[++i], out seed))
                        return (null, 0, false, false, $"--seed must be a non-negative integer, got '{args[i]}'");
                    break;
                case "--force": force = true; break;
                default: return (null, 0, false, false, $"unexpected argument '{args[i]}'");
            }
        }
        return (output, seed, force, torchNames, output is null ? $"{args[0]} needs --out DIR" : null);
    }

    private static int Fail(TextWriter stderr, string message)
    {
        stderr.WriteLine($"error: {message}\n\n{Usage}");
        return 2;
    }
}
