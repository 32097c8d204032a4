using RenderFarm.ModelBuilder.Graph;

namespace RenderFarm.ModelBuilder.Lora;

/// <summary>What <see cref="LoraFileWriter"/> writes.</summary>
public sealed record LoraWriteOptions
{
    public LoraLayout Layout { get; init; } = LoraLayout.Kohya;

    public int Rank { get; init; } = 4;

    /// <summary>The alpha written with every layer (scale alpha/rank); null writes none (alpha = rank, scale 1). kohya files always have one: null writes rank.</summary>
    public float? Alpha { get; init; }

    /// <summary>Seed of the down and up values; a preset's modules, the seed and these options fix the file's bytes.</summary>
    public ulong Seed { get; init; }

    public bool UNet { get; init; } = true;

    public bool TextEncoders { get; init; } = true;

    /// <summary>Also the UNet's k×k convolutions (resnets' conv1/conv2: kohya's LoCon "conv" layers); 1×1 projections are always in.</summary>
    public bool Convolutions { get; init; }

    /// <summary>Only modules whose path contains one of these (all targeted modules when null).</summary>
    public IReadOnlyList<string>? Only { get; init; }

    /// <summary>Size of the up values relative to 1/√rank (a trained LoRA's up starts at 0 and grows; 0.5 changes weights by a visible ~30 %).</summary>
    public double UpScale { get; init; } = 0.5;

    public ElementType Type { get; init; } = ElementType.Float;

    /// <summary>Write kohya's ss_base_model_version metadata ("sd_v1" / "sdxl_base_v1-0").</summary>
    public bool Metadata { get; init; } = true;
}
