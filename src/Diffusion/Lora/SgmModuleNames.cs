using System.Text.RegularExpressions;
using RenderFarm.Diffusion.Weights;

namespace RenderFarm.Diffusion.Lora;

/// <summary>
/// kohya's SDXL LoRAs name UNet modules as the original (SGM/LDM) code does — <c>input_blocks_4_1_transformer_blocks_0_attn1_to_q</c>,
/// <c>middle_block_1_proj_in</c>, <c>output_blocks_2_2_conv</c> — not as diffusers does. This maps such an
/// underscored name onto the diffusers module of the same layer (the mapping diffusers' own LoRA loader applies),
/// reading the UNet's structure (layers per block, which blocks attend) from the module names it has.
/// </summary>
internal static partial class SgmModuleNames
{
    [GeneratedRegex(@"^(input_blocks|output_blocks)_(\d+)_(\d+)(?:_(.*))?$")]
    private static partial Regex Block();

    [GeneratedRegex(@"^middle_block_(\d+)(?:_(.*))?$")]
    private static partial Regex Middle();

    private static readonly (string Sgm, string Diffusers)[] Fixed =
    [
        ("time_embed_0", "time_embedding.linear_1"), ("time_embed_2", "time_embedding.linear_2"),
        ("label_emb_0_0", "add_embedding.linear_1"), ("label_emb_0_2", "add_embedding.linear_2"),
        ("input_blocks_0_0", "conv_in"), ("out_0", "conv_norm_out"), ("out_2", "conv_out"),
    ];

    private static readonly (string Sgm, string Diffusers)[] ResnetParts =
    [
        ("in_layers_0", "norm1"), ("in_layers_2", "conv1"), ("out_layers_0", "norm2"), ("out_layers_3", "conv2"),
        ("emb_layers_1", "time_emb_proj"), ("skip_connection", "conv_shortcut"),
    ];

    /// <summary>The diffusers weight of an SGM-named UNet module, or null when the name is not one or maps to nothing.</summary>
    public static WeightTarget? Find(WeightLocator unet, string underscored)
    {
        foreach (var (sgm, diffusers) in Fixed)
        {
            if (underscored == sgm)
            {
                return unet.Find(diffusers);
            }
        }
        int layers = unet.Modules.Select(m => Regex.Match(m, @"^down_blocks\.0\.resnets\.(\d+)\.")).Where(m => m.Success)
            .Select(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).DefaultIfEmpty(-1).Max() + 1;
        if (layers == 0)
        {
            return null;
        }
        string? prefix = null, rest = null;
        if (Block().Match(underscored) is { Success: true } block)
        {
            int i = int.Parse(block.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
            int j = int.Parse(block.Groups[3].Value, System.Globalization.CultureInfo.InvariantCulture);
            rest = block.Groups[4].Value;
            bool down = block.Groups[1].Value == "input_blocks";
            int index = down ? i - 1 : i, span = layers + 1;
            if (index < 0)
            {
                return null;
            }
            int b = index / span, l = index % span;
            string blocks = down ? "down_blocks" : "up_blocks";
            prefix = (down, j, l == layers) switch
            {
                (true, 0, true) => $"down_blocks.{b}.downsamplers.0",
                (_, 0, _) => $"{blocks}.{b}.resnets.{l}",
                (_, 1, _) when Has(unet, $"{blocks}.{b}.attentions.{l}.") => $"{blocks}.{b}.attentions.{l}",
                (false, 1 or 2, _) => $"up_blocks.{b}.upsamplers.0",
                _ => null,
            };
            if (down && j == 0 && l == layers && rest == "op")
            {
                rest = "conv";
            }
        }
        else if (Middle().Match(underscored) is { Success: true } middle)
        {
            prefix = middle.Groups[1].Value switch
            {
                "0" => "mid_block.resnets.0",
                "1" => "mid_block.attentions.0",
                "2" => "mid_block.resnets.1",
                _ => null,
            };
            rest = middle.Groups[2].Value;
        }
        if (prefix is null || string.IsNullOrEmpty(rest))
        {
            return null;
        }
        if (prefix.Contains(".resnets.", StringComparison.Ordinal))
        {
            rest = ResnetParts.FirstOrDefault(p => p.Sgm == rest).Diffusers ?? rest;
        }
        return unet.FindUnderscored(prefix.Replace('.', '_') + "_" + rest.Replace('.', '_'));
    }

    private static bool Has(WeightLocator unet, string prefix) => unet.Modules.Any(m => m.StartsWith(prefix, StringComparison.Ordinal));
}
