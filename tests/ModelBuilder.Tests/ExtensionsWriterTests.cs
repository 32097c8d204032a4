using System.Buffers.Binary;
using System.Text.Json;
using RenderFarm.ModelBuilder.Lora;

namespace RenderFarm.ModelBuilder.Tests;

/// <summary>Torch-export naming, the LoRA files the builder writes for its presets, and the configs diffusers/transformers read.</summary>
public sealed class ExtensionsWriterTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("rf-extensions-").FullName;

    [Fact]
    public void TorchExportNamingRenamesLinearWeightsAndNamesNodesByModulePathKeepingTheWeights()
    {
        string plain = Path.Combine(_root, "plain"), torch = Path.Combine(_root, "torch");
        ModelPresets.Write("tiny", plain);
        ModelPresets.Write("tiny", torch, new ModelWriteOptions { TorchExportNames = true });
        var a = new OnnxWeights(Path.Combine(plain, "unet", "model.onnx"));
        var b = new OnnxWeights(Path.Combine(torch, "unet", "model.onnx"));
        var q = b.Model.Graph.Node.Single(n => n.Name == "/down_blocks.0/attentions.0/transformer_blocks.0/attn1/to_q/MatMul");
        Assert.StartsWith("onnx::MatMul_", q.Input[1]);
        Assert.Equal(a["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"], b[q.Input[1]]);
        // Conv weights and biases keep their parameter names, as torch.onnx.export leaves them.
        Assert.Equal(a["down_blocks.0.resnets.0.conv1.weight"], b["down_blocks.0.resnets.0.conv1.weight"]);
        Assert.Contains(b.Model.Graph.Node, n => n.Name == "/up_blocks.1/attentions.0/transformer_blocks.0/attn2/to_out.0/MatMul");
        Assert.DoesNotContain(b.Names, n => n.EndsWith("to_q.weight", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(LoraLayout.Kohya, "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q", ".lora_down.weight", ".lora_up.weight")]
    [InlineData(LoraLayout.Peft, "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", ".lora_A.weight", ".lora_B.weight")]
    public void LoraFilesHaveTheLayoutsKeysAndShapes(LoraLayout layout, string key, string down, string up)
    {
        string path = Path.Combine(_root, $"{layout}.safetensors");
        var modules = LoraFileWriter.Write(ModelPresets.Get("tiny"), path, new LoraWriteOptions { Layout = layout, Rank = 3, Convolutions = true });
        var header = Header(path);
        Assert.Equal([3, 32], Shape(header, key + down));
        Assert.Equal([32, 3], Shape(header, key + up));
        Assert.Equal(layout == LoraLayout.Kohya, header.TryGetProperty(key + ".alpha", out _));
        // A 3×3 conv: down [rank, in, 3, 3], up [out, rank, 1, 1]; text encoder layers too.
        string conv = layout == LoraLayout.Kohya ? "lora_unet_down_blocks_0_resnets_0_conv1" : "unet.down_blocks.0.resnets.0.conv1";
        Assert.Equal([3, 32, 3, 3], Shape(header, conv + down));
        Assert.Equal([32, 3, 1, 1], Shape(header, conv + up));
        string text = layout == LoraLayout.Kohya ? "lora_te_text_model_encoder_layers_0_self_attn_q_proj" : "text_encoder.text_model.encoder.layers.0.self_attn.q_proj";
        Assert.True(header.TryGetProperty(text + down, out _));
        Assert.Equal(modules.Count * (layout == LoraLayout.Kohya ? 3 : 2), header.EnumerateObject().Count(p => p.Name != "__metadata__"));
        // The same options write the same bytes.
        string again = Path.Combine(_root, $"{layout}-again.safetensors");
        LoraFileWriter.Write(ModelPresets.Get("tiny"), again, new LoraWriteOptions { Layout = layout, Rank = 3, Convolutions = true });
        Assert.Equal(File.ReadAllBytes(path), File.ReadAllBytes(again));
    }

    [Fact]
    public void SdxlKohyaLorasKeyTheTextEncodersTe1AndTe2()
    {
        string path = Path.Combine(_root, "xl.safetensors");
        LoraFileWriter.Write(ModelPresets.Get("tiny-sdxl"), path, new LoraWriteOptions());
        var names = Header(path).EnumerateObject().Select(p => p.Name).ToArray();
        Assert.Contains(names, n => n.StartsWith("lora_te1_text_model_", StringComparison.Ordinal));
        Assert.Contains(names, n => n.StartsWith("lora_te2_text_model_", StringComparison.Ordinal));
        Assert.DoesNotContain(names, n => n.StartsWith("lora_te_", StringComparison.Ordinal));
    }

    [Fact]
    public void CliWritesALora()
    {
        var output = new StringWriter();
        string path = Path.Combine(_root, "cli.safetensors");
        Assert.Equal(0, ModelBuilderCli.Run(["lora", "tiny", "--out", path, "--layout", "peft", "--rank", "2", "--unet-only"], output, new StringWriter(), default));
        Assert.Contains("rank-2 Peft LoRA for tiny", output.ToString());
        Assert.All(Header(path).EnumerateObject().Where(p => p.Name != "__metadata__"), p => Assert.StartsWith("unet.", p.Name));
    }

    [Fact]
    public void ConfigsCarryWhatDiffusersAndTransformersNeedToLoadThem()
    {
        string dir = Path.Combine(_root, "xl");
        ModelPresets.Write("tiny-sdxl", dir);
        using var vocab = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "tokenizer", "vocab.json")));
        int Id(string token) => vocab.RootElement.GetProperty(token).GetInt32();
        foreach (var (encoder, pad) in new[] { ("text_encoder", "<|endoftext|>"), ("text_encoder_2", "!") })
        {
            using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, encoder, "config.json")));
            Assert.Equal(Id("<|startoftext|>"), config.RootElement.GetProperty("bos_token_id").GetInt32());
            Assert.Equal(Id("<|endoftext|>"), config.RootElement.GetProperty("eos_token_id").GetInt32());
            Assert.Equal(Id(pad), config.RootElement.GetProperty("pad_token_id").GetInt32());
        }
        foreach (var vae in new[] { "vae_decoder", "vae_encoder" })
        {
            using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, vae, "config.json")));
            int blocks = config.RootElement.GetProperty("block_out_channels").GetArrayLength();
            Assert.Equal(Enumerable.Repeat("DownEncoderBlock2D", blocks), config.RootElement.GetProperty("down_block_types").EnumerateArray().Select(e => e.GetString()));
            Assert.Equal(Enumerable.Repeat("UpDecoderBlock2D", blocks), config.RootElement.GetProperty("up_block_types").EnumerateArray().Select(e => e.GetString()));
        }
    }

    private static JsonElement Header(string path)
    {
        var bytes = File.ReadAllBytes(path);
        long length = BinaryPrimitives.ReadInt64LittleEndian(bytes);
        Assert.Equal(0, (8 + length) % 8);
        return JsonDocument.Parse(bytes.AsMemory(8, (int)length)).RootElement.Clone();
    }

    private static long[] Shape(JsonElement header, string key) =>
        header.GetProperty(key).GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray();

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }
}
