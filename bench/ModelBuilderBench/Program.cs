// Loads each component of a model directory in ONNX Runtime (timed, RSS after load) under the two session setups
// bench/model-builder.md compares, then times one UNet step at SIZE×SIZE for a CFG batch, plus one text encoder and
// one VAE decoder run. Inputs follow each model's own metadata (element types, channels, extra SDXL inputs).
//
//   dotnet bench/ModelBuilderBench/bin/Release/net10.0/ModelBuilderBench.dll DIR [--size 512] [--batch 2] [--runs 5]
// Normally run through bench/model-builder.sh, which creates DIR first and measures that.
using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
if (args.Length == 0 || !File.Exists(Path.Combine(args[0], "unet", "model.onnx")))
{
    Console.Error.WriteLine("usage: ModelBuilderBench DIR [--size 512] [--batch 2] [--runs 5]   (DIR: a model directory)");
    return 2;
}
string dir = args[0];
int size = Option("--size", 512), batch = Option("--batch", 2), runs = Option("--runs", 5);
Console.WriteLine($"# {dir}: {Environment.ProcessorCount} cores, load average {Measure.LoadAverage()}, ORT {OrtEnv.Instance().GetVersionString()}, " +
    $".NET {Environment.Version}, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");

int threads = Environment.ProcessorCount; // one intra-op thread per core, as the figures in bench/model-builder.md
Console.WriteLine($"sessions: CPU, IntraOpNumThreads = {threads}, random inputs of each model's declared types");
var setups = new (string Name, Func<SessionOptions> Create)[]
{
    ("ORT_ENABLE_EXTENDED, no prepacking", () =>
    {
        var o = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_EXTENDED, IntraOpNumThreads = threads };
        o.AddSessionConfigEntry("session.disable_prepacking", "1");
        return o;
    }),
    ("ORT_ENABLE_ALL (default)", () => new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = threads }),
};
string[] components = Directory.GetDirectories(dir).Where(d => File.Exists(Path.Combine(d, "model.onnx")))
    .Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray()!;

Console.WriteLine("\n## Load (InferenceSession creation; files in page cache right after create)\n");
Console.WriteLine($"| component | {string.Join(" | ", setups.Select(s => s.Name))} |");
Console.WriteLine($"|---|{string.Concat(setups.Select(_ => "---:|"))}");
foreach (var component in components)
{
    var cells = setups.Select(setup =>
    {
        using var options = setup.Create();
        var clock = Stopwatch.StartNew();
        using (new InferenceSession(Path.Combine(dir, component, "model.onnx"), options))
            return $"{clock.Elapsed.TotalSeconds:F2} s (RSS {Measure.RssMib()} MiB)";
    });
    Console.WriteLine($"| {component} | {string.Join(" | ", cells)} |");
}

int latent = size / 8;
Console.WriteLine($"\n## One UNet step, {size}×{size} ({latent}×{latent} latents), batch {batch} (CFG), {runs} runs after a warm-up\n");
Console.WriteLine("| session | runs (s) | min | median |");
Console.WriteLine("|---|---|---:|---:|");
foreach (var setup in setups)
{
    using var options = setup.Create();
    using var unet = new InferenceSession(Path.Combine(dir, "unet", "model.onnx"), options);
    var times = Measure.Runs(unet, Inputs.For(unet, new() { ["batch"] = batch, ["steps"] = 1, ["sequence"] = 77, ["height"] = latent, ["width"] = latent }), runs);
    Console.WriteLine($"| {setup.Name} | {string.Join(", ", times.Select(t => t.ToString("F2")))} | {times.Min():F2} s | {Measure.Median(times):F2} s |");
}

Console.WriteLine($"\n## Other components, {setups[0].Name}, one run after a warm-up\n");
using (var options = setups[0].Create())
{
    using var text = new InferenceSession(Path.Combine(dir, "text_encoder", "model.onnx"), options);
    Console.WriteLine($"- text_encoder, batch {batch}: {Measure.Runs(text, Inputs.For(text, new() { ["batch"] = batch }), 1)[0]:F3} s");
    using var vae = new InferenceSession(Path.Combine(dir, "vae_decoder", "model.onnx"), options);
    var latents = Inputs.For(vae, new() { ["batch"] = 1, ["latent_height"] = latent, ["latent_width"] = latent });
    Console.WriteLine($"- vae_decoder, {latent}×{latent} → {size}×{size}, batch 1: {Measure.Runs(vae, latents, 1)[0]:F2} s");
}
return 0;

int Option(string name, int fallback)
{
    int i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;
}

/// <summary>Random inputs of the types and fixed dims the model declares; symbolic dims from <c>sizes</c>.</summary>
internal static class Inputs
{
    public static IReadOnlyDictionary<string, OrtValue> For(InferenceSession session, Dictionary<string, int> sizes)
    {
        var random = new Random(1);
        return session.InputMetadata.ToDictionary(kv => kv.Key, kv =>
        {
            var meta = kv.Value;
            long[] shape = meta.Dimensions.Select((d, i) => (long)(d >= 0 ? d : sizes[meta.SymbolicDimensions[i]])).ToArray();
            int n = (int)shape.Aggregate(1L, (a, b) => a * b);
            // Integers are token ids or timesteps: 1..99 is valid for both.
            if (meta.ElementType == typeof(int)) return OrtValue.CreateTensorValueFromMemory(Fill(n, _ => random.Next(1, 100)), shape);
            if (meta.ElementType == typeof(long)) return OrtValue.CreateTensorValueFromMemory(Fill(n, _ => (long)random.Next(1, 100)), shape);
            if (meta.ElementType == typeof(Float16)) return OrtValue.CreateTensorValueFromMemory(Fill(n, _ => (Float16)(random.NextSingle() * 2 - 1)), shape);
            if (meta.ElementType == typeof(float)) return OrtValue.CreateTensorValueFromMemory(Fill(n, _ => random.NextSingle() * 2 - 1), shape);
            throw new NotSupportedException($"{kv.Key}: {meta.ElementType}");
        });
    }

    private static T[] Fill<T>(int n, Func<int, T> value) => Enumerable.Range(0, n).Select(value).ToArray();
}

internal static class Measure
{
    /// <summary>One untimed warm-up run, then <paramref name="runs"/> timed ones, seconds.</summary>
    public static double[] Runs(InferenceSession session, IReadOnlyDictionary<string, OrtValue> inputs, int runs)
    {
        using var runOptions = new RunOptions();
        void Once() { using var outputs = session.Run(runOptions, inputs, session.OutputNames); }
        Once();
        return Enumerable.Range(0, runs).Select(_ =>
        {
            var clock = Stopwatch.StartNew();
            Once();
            return clock.Elapsed.TotalSeconds;
        }).ToArray();
    }

    public static double Median(double[] values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    public static long RssMib() =>
        File.ReadLines("/proc/self/status").Where(l => l.StartsWith("VmRSS:"))
            .Select(l => long.Parse(l.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1]) / 1024).FirstOrDefault();

    public static string LoadAverage() =>
        File.Exists("/proc/loadavg") ? string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";
}
