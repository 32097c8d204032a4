namespace RenderFarm.GpuBench;

/// <summary>Command-line settings (see Program.cs).</summary>
internal sealed record BenchOptions(string Preset, string Directory, string Provider, int Device, int Size, int Steps,
    int[] Batches, int Reps, string? Fp32Preset, string CastControlNetPreset, string? JsonPath, IReadOnlySet<string> Sections)
{
    /// <summary>Every section, in the order they run; --sections picks some.</summary>
    public static readonly string[] AllSections = ["default", "graph", "hoststep", "cpureference", "controlnet", "bare", "schedulers", "requests", "controlnetcast", "fixedbatch", "lora", "batching", "determinism", "fp32"];

    public bool Runs(string section) => Sections.Contains(section);

    public static BenchOptions Parse(string[] args)
    {
        string? Get(string name)
        {
            int i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
        }
        string preset = Get("--preset") ?? "sd15-fp16";
        bool tiny = preset.StartsWith("tiny", StringComparison.Ordinal);
        return new(
            preset,
            Get("--dir") ?? Path.Combine(Path.GetTempPath(), "gpubench-" + preset),
            Get("--ep") ?? "cuda",
            int.Parse(Get("--device") ?? "0"),
            int.Parse(Get("--size") ?? (tiny ? "64" : "512")),
            int.Parse(Get("--steps") ?? "30"),
            (Get("--batches") ?? "1,4,8").Split(',').Select(int.Parse).ToArray(),
            int.Parse(Get("--reps") ?? "3"),
            Get("--fp32-preset") is { } fp32 && fp32 != "none" ? fp32 : null,
            // The controlnetcast section's ControlNet: the preset's architecture in the other element type.
            Get("--cast-controlnet") ?? (preset.Contains("fp16") ? (tiny ? "tiny" : "sd15") : (tiny ? "tiny-fp16" : "sd15-fp16")),
            Get("--json"),
            (Get("--sections")?.Split(',') ?? AllSections).ToHashSet());
    }
}
