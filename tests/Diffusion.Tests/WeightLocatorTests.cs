using RenderFarm.Diffusion.Lora;
using RenderFarm.Diffusion.Weights;

namespace RenderFarm.Diffusion.Tests;

public class WeightLocatorTests(LoraFixture fixture) : IClassFixture<LoraFixture>
{
    private WeightLocator Locator(string preset, string component, bool torchNames = false) =>
        new(OnnxGraph.Read(Path.Combine(fixture.Model(preset, torchNames), component, "model.onnx")));

    [Fact]
    public void TorchExportWeightsAreFoundThroughTheirNodesNamesAndReadAsTransposed()
    {
        var unet = Locator("tiny", "unet", torchNames: true);
        var q = unet.Find("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q")!;
        Assert.StartsWith("onnx::MatMul_", q.Initializer.Name);
        Assert.Equal(WeightLayout.InOut, q.Layout);
        var conv = unet.Find("down_blocks.0.resnets.0.conv1")!;
        Assert.Equal("down_blocks.0.resnets.0.conv1.weight", conv.Initializer.Name);
        Assert.Equal(WeightLayout.OutIn, conv.Layout);
        Assert.Equal(q, unet.FindUnderscored("down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"));
        var text = Locator("tiny", "text_encoder", torchNames: true);
        Assert.StartsWith("onnx::MatMul_", text.Find("text_model.encoder.layers.0.self_attn.out_proj")!.Initializer.Name);
    }

    [Theory]
    [InlineData("/down_blocks.0/attentions.0/transformer_blocks.0/attn1/to_q/MatMul", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q")]
    [InlineData("/text_model/encoder/layers.11/mlp/fc2/MatMul_1", "text_model.encoder.layers.11.mlp.fc2")]
    [InlineData("up_blocks.1.attentions.0.proj_in/Conv", "up_blocks.1.attentions.0.proj_in")]
    [InlineData("MatMul_3", null)]
    public void ANodeNameCarriesItsModulePath(string node, string? module) => Assert.Equal(module, WeightLocator.ModuleOfNode(node));

    [Theory]
    // tiny-sdxl: two layers per block, attention in the second block only.
    [InlineData("input_blocks_4_1_transformer_blocks_0_attn1_to_q", "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q")]
    [InlineData("input_blocks_5_1_proj_in", "down_blocks.1.attentions.1.proj_in")]
    [InlineData("input_blocks_1_0_in_layers_2", "down_blocks.0.resnets.0.conv1")]
    [InlineData("input_blocks_3_0_op", "down_blocks.0.downsamplers.0.conv")]
    [InlineData("middle_block_1_transformer_blocks_1_ff_net_2", "mid_block.attentions.0.transformer_blocks.1.ff.net.2")]
    [InlineData("middle_block_2_emb_layers_1", "mid_block.resnets.1.time_emb_proj")]
    [InlineData("output_blocks_0_1_transformer_blocks_0_attn2_to_k", "up_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k")]
    [InlineData("output_blocks_2_2_conv", "up_blocks.0.upsamplers.0.conv")]
    [InlineData("output_blocks_3_0_skip_connection", "up_blocks.1.resnets.0.conv_shortcut")]
    [InlineData("time_embed_0", "time_embedding.linear_1")]
    public void KohyaSdxlNamesMapOntoDiffusersModules(string sgm, string diffusers)
    {
        var unet = Locator("tiny-sdxl", "unet");
        Assert.Equal(diffusers, SgmModuleNames.Find(unet, sgm)?.Module);
    }
}
