using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Text.Json;
using RenderFarm.Diffusion.Embeddings;
using RenderFarm.Diffusion.Lora;
using RenderFarm.ModelBuilder;
using RenderFarm.ModelBuilder.Graph;
using RenderFarm.ModelBuilder.Lora;

namespace RenderFarm.Diffusion.Tests;

/// <summary>
/// Tiny models in both naming styles and SDXL, LoRA files written for them by the model builder, embedding files, and
/// pipelines over them with a LoRA and an embedding library; written once per test class.
/// </summary>
public sealed class LoraFixture : IDisposable
{
    private readonly ConcurrentDictionary<string, Lazy<StableDiffusionPipeline>> _pipelines = new();
    private readonly ConcurrentDictionary<string, Lazy<string>> _models = new();

    public LoraFixture()
    {
        Root = Directory.CreateTempSubdirectory("renderfarm-lora-").FullName;
        LoraDirectory = Path.Combine(Root, "loras");
        EmbeddingDirectory = Path.Combine(Root, "embeddings");
        Directory.CreateDirectory(LoraDirectory);
        Directory.CreateDirectory(EmbeddingDirectory);
        var tiny = ModelPresets.Get("tiny");
        LoraFileWriter.Write(tiny, LoraPath("style"), Style);
        LoraFileWriter.Write(tiny, LoraPath("detail"), Detail);
        LoraFileWriter.Write(ModelPresets.Get("tiny-sdxl"), LoraPath("xl"), Xl);
        LoraFileWriter.Write(tiny, LoraPath("convs"), Convs);
        SafeTensorsWriter.Write(LoraPath("bogus"),
        [
            new("lora_unet_down_blocks_0_attentions_0_no_such_layer.lora_down.weight", [2, 32], new float[64]),
            new("lora_unet_down_blocks_0_attentions_0_no_such_layer.lora_up.weight", [32, 2], new float[64]),
        ]);
        SafeTensorsWriter.Write(Path.Combine(EmbeddingDirectory, "myemb.safetensors"), [new("emb_params", [2, 32], Vector(64, 1))]);
        SafeTensorsWriter.Write(Path.Combine(EmbeddingDirectory, "xlemb.safetensors"),
            [new("clip_l", [1, 32], Vector(32, 2)), new("clip_g", [1, 32], Vector(32, 3))]);
        Loras = new LoraLibrary(LoraDirectory);
        Embeddings = new EmbeddingLibrary(EmbeddingDirectory);
    }

    /// <summary>kohya layout, UNet (k×k convs too) and text encoder, alpha 2 of rank 4 (scale ½), float16 tensors.</summary>
    public static readonly LoraWriteOptions Style = new() { Layout = LoraLayout.Kohya, Rank = 4, Alpha = 2, Seed = 11, Convolutions = true, Type = ElementType.Float16 };

    /// <summary>diffusers/PEFT layout, rank 2, no alpha (scale 1).</summary>
    public static readonly LoraWriteOptions Detail = new() { Layout = LoraLayout.Peft, Rank = 2, Seed = 12, Metadata = false };

    /// <summary>Only the UNet's resnet convolutions (3×3 and the 1×1 shortcut), kohya layout.</summary>
    public static readonly LoraWriteOptions Convs = new() { Rank = 4, Seed = 14, Convolutions = true, TextEncoders = false, Only = ["resnets"] };

    /// <summary>kohya SDXL (lora_te1_/lora_te2_).</summary>
    public static readonly LoraWriteOptions Xl = new() { Layout = LoraLayout.Kohya, Rank = 3, Seed = 13 };

    public string Root { get; }

    public string LoraDirectory { get; }

    public string EmbeddingDirectory { get; }

    public LoraLibrary Loras { get; }

    public EmbeddingLibrary Embeddings { get; }

    public string LoraPath(string name) => Path.Combine(LoraDirectory, name + ".safetensors");

    /// <summary>A preset's model directory (torch-export naming when <paramref name="torchNames"/>), written once.</summary>
    public string Model(string preset, bool torchNames = false) =>
        _models.GetOrAdd($"{preset}|{torchNames}", _ => new(() =>
        {
            var directory = Path.Combine(Root, preset + (torchNames ? "-torch" : ""));
            ModelPresets.Write(preset, directory, new ModelWriteOptions { TorchExportNames = torchNames });
            return directory;
        })).Value;

    /// <summary>A pipeline over <see cref="Model"/> with both libraries.</summary>
    public StableDiffusionPipeline Pipeline(string preset, bool torchNames = false, ModelBatching batching = ModelBatching.Image) =>
        _pipelines.GetOrAdd($"{preset}|{torchNames}|{batching}", _ => new(() =>
            StableDiffusionPipeline.Load(Model(preset, torchNames), new DiffusionOptions { Batching = batching },
                new ModelExtensions { Loras = Loras, Embeddings = Embeddings }))).Value;

    /// <summary>The float32 values the model builder generated for a parameter (by its module-path name) of a preset's component.</summary>
    public static (float[] Values, long[] Dims) BuilderWeight(string preset, string component, string parameterName)
    {
        var graph = ModelDirectoryWriter.BuildGraphs(ModelPresets.Get(preset)).Single(g => g.Folder == component).Graph;
        var init = graph.Initializers.Single(i => i.SeedName == parameterName);
        var bytes = init.ToBytes(SplitMix64.SeedFor(0, component));
        var values = init.Type == ElementType.Float16
            ? Enumerable.Range(0, bytes.Length / 2).Select(i => (float)BinaryPrimitives.ReadHalfLittleEndian(bytes.AsSpan(2 * i))).ToArray()
            : Enumerable.Range(0, bytes.Length / 4).Select(i => BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(4 * i))).ToArray();
        return (values, init.Dims);
    }

    /// <summary>A safetensors file's tensors read without the library's reader: name → (shape, float64 values).</summary>
    public static Dictionary<string, (long[] Shape, double[] Values)> ReadSafeTensors(string path)
    {
        var bytes = File.ReadAllBytes(path);
        long headerLength = BinaryPrimitives.ReadInt64LittleEndian(bytes);
        using var header = JsonDocument.Parse(bytes.AsMemory(8, (int)headerLength));
        var result = new Dictionary<string, (long[], double[])>();
        foreach (var entry in header.RootElement.EnumerateObject().Where(e => e.Name != "__metadata__"))
        {
            var shape = entry.Value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray();
            var offsets = entry.Value.GetProperty("data_offsets").EnumerateArray().Select(o => o.GetInt64()).ToArray();
            var data = bytes.AsSpan((int)(8 + headerLength + offsets[0]), (int)(offsets[1] - offsets[0]));
            double[] values = entry.Value.GetProperty("dtype").GetString() switch
            {
                "F32" => Enumerable.Range(0, data.Length / 4).Select(i => (double)BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan((int)(8 + headerLength + offsets[0]) + 4 * i))).ToArray(),
                "F16" => Enumerable.Range(0, data.Length / 2).Select(i => (double)BinaryPrimitives.ReadHalfLittleEndian(bytes.AsSpan((int)(8 + headerLength + offsets[0]) + 2 * i))).ToArray(),
                var other => throw new InvalidDataException(other),
            };
            result[entry.Name] = (shape, values);
        }
        return result;
    }

    private static float[] Vector(int count, int seed) => Enumerable.Range(0, count).Select(i => (float)Math.Sin(seed * 7.1 + i * 0.37)).ToArray();

    public void Dispose()
    {
        foreach (var pipeline in _pipelines.Values.Where(p => p.IsValueCreated)) pipeline.Value.Dispose();
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
    }
}
