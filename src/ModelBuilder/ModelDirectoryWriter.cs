using RenderFarm.ModelBuilder.Components;
using RenderFarm.ModelBuilder.Graph;
using RenderFarm.ModelBuilder.Tokenizer;

namespace RenderFarm.ModelBuilder;

/// <summary>Writes a diffusers ONNX model directory (model_index.json, scheduler, tokenizer(s), four or five ONNX models).</summary>
public static class ModelDirectoryWriter
{
    public const string DiffusersVersion = "0.30.0";

    /// <summary>SDXL's second tokenizer pads with "!" (open_clip's convention), the first with &lt;|endoftext|&gt;.</summary>
    private const string SecondPadToken = "!";

    /// <summary>
    /// Where a model directory keeps the UNet that takes ControlNet residuals (OnnxStack's layout: <c>unet/</c> stays the
    /// plain UNet). Written with the unet's seed, so both hold the same weights.
    /// </summary>
    public const string ControlNetUNetFolder = "controlnet";

    /// <summary>Where a model directory keeps its tiny autoencoder decoder (TAESD), used for live previews.</summary>
    public const string TinyDecoderFolder = "vae_decoder_tiny";

    public static IReadOnlyList<ComponentGraph> BuildGraphs(PresetDefinition p, int? vocabSize = null, bool torchExportNames = false)
    {
        int vocab = vocabSize ?? p.VocabSize ?? ClipBpeVocabulary.Learn().Size;
        var options = new GraphOptions(p.FloatType, p.ComputeType, p.FusedAttention, torchExportNames);
        var list = new List<ComponentGraph>();
        if (p.WritesFirstEncoder)
            list.Add(new("text_encoder", ClipTextEncoderBuilder.Build(p.TextEncoder, vocab, p.InputIdsType, options)));
        if (p.TextEncoder2 is { } te2)
        {
            var g2 = ClipTextEncoderBuilder.Build(te2, vocab, p.InputIdsType, options);
            list.Add(new("text_encoder_2", g2));
        }
        list.Add(new("unet", UNetBuilder.Build(p.UNet, p.TimestepType, options)));
        if (p.ControlNetUNet)
            list.Add(new(ControlNetUNetFolder, UNetBuilder.Build(p.UNet, p.TimestepType, options, controlResiduals: true)));
        list.Add(new("vae_decoder", VaeBuilder.BuildDecoder(p.Vae, options)));
        list.Add(new("vae_encoder", VaeBuilder.BuildEncoder(p.Vae, options)));
        if (p.TinyDecoder is { } tiny)
            list.Add(new(TinyDecoderFolder, TinyDecoderBuilder.Build(tiny, options)));
        return list;
    }

    public static ModelWriteResult Write(PresetDefinition preset, string outputDirectory, ModelWriteOptions options)
    {
        string target = Path.GetFullPath(outputDirectory.TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar));
        if (File.Exists(target))
            throw new IOException($"'{target}' is a file, not a directory");
        bool exists = Directory.Exists(target);
        if (exists && Directory.EnumerateFileSystemEntries(target).Any() && !options.Force)
            throw new IOException($"'{target}' is not empty; pass --force (ModelWriteOptions.Force) to replace it");

        string parent = Path.GetDirectoryName(target)!;
        Directory.CreateDirectory(parent);
        string temp = Path.Combine(parent, $".{Path.GetFileName(target)}.tmp-{Guid.NewGuid():N}");
        Directory.CreateDirectory(temp);
        try
        {
            var components = WriteContents(preset, temp, options);
            if (Directory.Exists(target))
                Directory.Delete(target, recursive: true);
            Directory.Move(temp, target);
            return new ModelWriteResult(target, components);
        }
        catch
        {
            try { Directory.Delete(temp, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    private static List<ComponentInfo> WriteContents(PresetDefinition p, string dir, ModelWriteOptions options)
    {
        var ct = options.CancellationToken;
        var vocabulary = ClipBpeVocabulary.Learn(p.VocabSize);
        if (p.WritesFirstEncoder)
            vocabulary.WriteTo(Path.Combine(dir, "tokenizer"));
        if (p.TextEncoder2 is not null)
            vocabulary.WriteTo(Path.Combine(dir, "tokenizer_2"), padToken: SecondPadToken);
        WriteScheduler(p, Path.Combine(dir, "scheduler"));

        var infos = new List<ComponentInfo>();
        foreach (var (folder, graph) in BuildGraphs(p, vocabulary.Size, options.TorchExportNames))
        {
            ct.ThrowIfCancellationRequested();
            string componentDir = Path.Combine(dir, folder);
            Directory.CreateDirectory(componentDir);
            ulong componentSeed = SplitMix64.SeedFor(options.Seed, folder == ControlNetUNetFolder ? "unet" : folder);
            Func<Initializer, byte[]?>? replace = options.ReplaceWeights is { } replaceWeights
                ? init => replaceWeights(folder, init) is { } values ? Initializer.Encode(init.Type, values) : null
                : null;
            OnnxModelWriter.Write(graph, Path.Combine(componentDir, "model.onnx"), componentSeed, options.ExternalDataThreshold, replace);
            Json.Write(Path.Combine(componentDir, "config.json"), ComponentConfig(p, folder, vocabulary));
            long bytes = Directory.EnumerateFiles(componentDir).Sum(f => new FileInfo(f).Length);
            var info = new ComponentInfo(folder, graph.ParameterCount, bytes);
            infos.Add(info);
            options.Log?.Invoke($"{folder,-15} {info.Parameters,15:N0} parameters {FormatBytes(bytes),10}");
        }
        WriteModelIndex(p, dir);
        return infos;
    }

    public static string FormatBytes(long bytes) => bytes switch
    {
        < 1 << 10 => $"{bytes} B",
        < 1 << 20 => $"{bytes / 1024.0:F1} KiB",
        < 1 << 30 => $"{bytes / (1024.0 * 1024):F1} MiB",
        _ => $"{bytes / (1024.0 * 1024 * 1024):F2} GiB",
    };

    private static void WriteModelIndex(PresetDefinition p, string dir)
    {
        string[] onnx = ["diffusers", "OnnxRuntimeModel"];
        string[] tokenizer = ["transformers", "CLIPTokenizer"];
        var index = new Dictionary<string, object?>
        {
            ["_class_name"] = p.Family switch
            {
                _ when p.Refiner => "ORTStableDiffusionXLImg2ImgPipeline",
                ModelFamily.StableDiffusionInpaint => "OnnxStableDiffusionInpaintPipeline",
                ModelFamily.StableDiffusionXL => "ORTStableDiffusionXLPipeline",
                _ => "OnnxStableDiffusionPipeline",
            },
            ["_diffusers_version"] = DiffusersVersion,
        };
        if (p.Family != ModelFamily.StableDiffusionXL)
        {
            index["feature_extractor"] = new object?[] { null, null };
            index["requires_safety_checker"] = false;
            index["safety_checker"] = new object?[] { null, null };
        }
        else if (p.Refiner)
        {
            // diffusers' refiner: no first encoder, aesthetic-score conditioning, empty prompts encoded (not zeroed).
            index["force_zeros_for_empty_prompt"] = false;
            index["requires_aesthetics_score"] = true;
        }
        else
        {
            index["force_zeros_for_empty_prompt"] = true;
        }
        index["scheduler"] = new[] { "diffusers", SchedulerClass(p) };
        index["text_encoder"] = p.WritesFirstEncoder ? onnx : new object?[] { null, null };
        if (p.TextEncoder2 is not null)
            index["text_encoder_2"] = onnx;
        index["tokenizer"] = p.WritesFirstEncoder ? tokenizer : new object?[] { null, null };
        if (p.TextEncoder2 is not null)
            index["tokenizer_2"] = tokenizer;
        index["unet"] = onnx;
        index["vae_decoder"] = onnx;
        index["vae_encoder"] = onnx;
        if (p.TinyDecoder is not null)
            index[TinyDecoderFolder] = onnx;
        Json.Write(Path.Combine(dir, "model_index.json"), index);
    }

    private static string SchedulerClass(PresetDefinition p) => p.Distillation switch
    {
        Distillation.Lcm => "LCMScheduler",
        Distillation.Turbo => "EulerDiscreteScheduler",
        _ => p.Family == ModelFamily.StableDiffusionXL ? "EulerDiscreteScheduler" : "PNDMScheduler",
    };

    private static void WriteScheduler(PresetDefinition p, string dir)
    {
        Directory.CreateDirectory(dir);
        var config = new Dictionary<string, object?>
        {
            ["_class_name"] = SchedulerClass(p),
            ["_diffusers_version"] = DiffusersVersion,
            ["beta_end"] = 0.012,
            ["beta_schedule"] = "scaled_linear",
            ["beta_start"] = 0.00085,
            ["clip_sample"] = false,
            ["num_train_timesteps"] = 1000,
            ["prediction_type"] = p.PredictionType,
            ["set_alpha_to_one"] = false,
            ["skip_prk_steps"] = true,
            ["steps_offset"] = 1,
            ["timestep_spacing"] = "leading",
            ["trained_betas"] = null,
        };
        if (p.Family == ModelFamily.StableDiffusionXL || p.Distillation == Distillation.Turbo)
        {
            config["interpolation_type"] = "linear";
            config["use_karras_sigmas"] = false;
        }
        if (p.Distillation == Distillation.Turbo)
        {
            config["timestep_spacing"] = "trailing";
        }
        if (p.Distillation == Distillation.Lcm)
        {
            config.Remove("skip_prk_steps");
            config["clip_sample_range"] = 1.0;
            config["original_inference_steps"] = 50;
            config["set_alpha_to_one"] = true;
            config["timestep_scaling"] = 10.0;
        }
        Json.Write(Path.Combine(dir, "scheduler_config.json"), config);
    }

    /// <summary>
    /// The config.json fields a UNet and a ControlNet (a copy of its encoder half) share, as diffusers names them; sorted
    /// by key, as the files list them.
    /// </summary>
    internal static SortedDictionary<string, object?> EncoderConfig(UNetConfig u, string className) => new(StringComparer.Ordinal)
    {
        ["_class_name"] = className,
        ["_diffusers_version"] = DiffusersVersion,
        ["attention_head_dim"] = u.Heads,
        ["block_out_channels"] = u.BlockOut,
        ["cross_attention_dim"] = u.ContextDim,
        ["down_block_types"] = u.CrossAttention.Select(a => a ? "CrossAttnDownBlock2D" : "DownBlock2D").ToArray(),
        ["flip_sin_to_cos"] = true,
        ["freq_shift"] = 0,
        ["in_channels"] = u.InChannels,
        ["layers_per_block"] = u.LayersPerBlock,
        ["norm_eps"] = u.NormEps,
        ["norm_num_groups"] = u.NormGroups,
        ["use_linear_projection"] = u.LinearProjection,
    };

    /// <summary>The component's config.json, in the spirit of the diffusers/transformers configs optimum exports.</summary>
    /// <remarks>
    /// transformers reads the special-token ids from the text encoder's config (CLIPTextModel's pooled output looks for
    /// eos_token_id), and diffusers builds AutoencoderKL's blocks from down_block_types/up_block_types: without them both
    /// fall back to defaults that do not fit these models.
    /// </remarks>
    private static Dictionary<string, object?> ComponentConfig(PresetDefinition p, string folder, ClipBpeVocabulary vocabulary)
    {
        int vocabSize = vocabulary.Size;
        switch (folder)
        {
            case "text_encoder" or "text_encoder_2":
                var t = folder == "text_encoder" ? p.TextEncoder : p.TextEncoder2!;
                return new()
                {
                    ["architectures"] = new[] { t.ProjectionDim is null ? "CLIPTextModel" : "CLIPTextModelWithProjection" },
                    ["bos_token_id"] = vocabulary.IdOf(ClipBpeVocabulary.StartOfText),
                    ["eos_token_id"] = vocabulary.IdOf(ClipBpeVocabulary.EndOfText),
                    ["hidden_act"] = t.Act == Activation.QuickGelu ? "quick_gelu" : "gelu",
                    ["hidden_size"] = t.Hidden,
                    ["intermediate_size"] = t.Intermediate,
                    ["layer_norm_eps"] = t.LayerNormEps,
                    ["max_position_embeddings"] = t.MaxPositions,
                    ["model_type"] = "clip_text_model",
                    ["num_attention_heads"] = t.Heads,
                    ["num_hidden_layers"] = t.Layers,
                    ["pad_token_id"] = vocabulary.IdOf(folder == "text_encoder_2" ? SecondPadToken : ClipBpeVocabulary.EndOfText),
                    ["projection_dim"] = t.ProjectionDim ?? t.Hidden,
                    ["torch_dtype"] = p.FloatType == ElementType.Float16 ? "float16" : "float32",
                    ["vocab_size"] = vocabSize,
                };
            case "unet" or ControlNetUNetFolder:
                var u = p.UNet;
                var unet = EncoderConfig(u, "UNet2DConditionModel");
                unet["addition_embed_type"] = u.Sdxl is null ? null : "text_time";
                unet["addition_time_embed_dim"] = u.Sdxl?.AdditionTimeEmbedDim;
                unet["out_channels"] = u.OutChannels;
                unet["projection_class_embeddings_input_dim"] = u.Sdxl?.ProjectionInputDim;
                unet["sample_size"] = p.SampleSize;
                unet["time_cond_proj_dim"] = u.TimeCondProjDim;
                unet["transformer_layers_per_block"] = u.BlockOut.Select((_, i) => u.TransformerLayersAt(i)).ToArray();
                unet["up_block_types"] = u.CrossAttention.Reverse().Select(a => a ? "CrossAttnUpBlock2D" : "UpBlock2D").ToArray();
                return new(unet);
            case TinyDecoderFolder:
                var tiny = p.TinyDecoder!;
                // diffusers AutoencoderTiny's config (decoder half): scaling_factor 1, the UNet's latents go in as they are.
                return new()
                {
                    ["_class_name"] = "AutoencoderTiny",
                    ["_diffusers_version"] = DiffusersVersion,
                    ["act_fn"] = "relu",
                    ["decoder_block_out_channels"] = tiny.BlockOut,
                    ["latent_channels"] = tiny.LatentChannels,
                    ["num_decoder_blocks"] = tiny.Blocks,
                    ["out_channels"] = tiny.ImageChannels,
                    ["scaling_factor"] = 1.0,
                    ["upsample_fn"] = "nearest",
                    ["upsampling_scaling_factor"] = 2,
                };
            default:
                var v = p.Vae;
                return new()
                {
                    ["_class_name"] = "AutoencoderKL",
                    ["_diffusers_version"] = DiffusersVersion,
                    ["act_fn"] = "silu",
                    ["block_out_channels"] = v.BlockOut,
                    ["down_block_types"] = v.BlockOut.Select(_ => "DownEncoderBlock2D").ToArray(),
                    ["in_channels"] = v.ImageChannels,
                    ["latent_channels"] = v.LatentChannels,
                    ["layers_per_block"] = v.LayersPerBlock,
                    ["norm_num_groups"] = v.NormGroups,
                    ["out_channels"] = v.ImageChannels,
                    ["sample_size"] = p.SampleSize * v.DownFactor,
                    ["scaling_factor"] = v.ScalingFactor,
                    ["up_block_types"] = v.BlockOut.Select(_ => "UpDecoderBlock2D").ToArray(),
                };
        }
    }
}
