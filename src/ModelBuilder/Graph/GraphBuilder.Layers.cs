namespace RenderFarm.ModelBuilder.Graph;

/// <summary>Neural-network layers in PyTorch semantics. <c>p</c> is the parameter prefix (e.g. "mid_block.resnets.0").</summary>
public sealed partial class GraphBuilder
{
    private static TensorFill FanIn(long fanIn) => new TensorFill.Uniform(1.0 / Math.Sqrt(fanIn));

    /// <summary>y = x·W + b, W stored [in, out] (as torch's exporter stores a transposed Linear weight).</summary>
    public string Linear(string x, string p, long inFeatures, long outFeatures, bool bias = true)
    {
        string w = LinearWeight(p, [inFeatures, outFeatures], FanIn(inFeatures));
        string y = MatMul(p, x, w);
        return bias ? Add(p, y, Parameter($"{p}.bias", [outFeatures], FanIn(inFeatures))) : y;
    }

    /// <summary>2-D convolution, weight [out, in, k, k]; pads default to k/2 on every side; pads order is ONNX's
    /// [top, left, bottom, right]. Without <paramref name="bias"/>, as torch's Conv2d(bias=False): no bias parameter.</summary>
    public string Conv2d(string x, string p, long inChannels, long outChannels, long kernel, long stride = 1, long[]? pads = null, bool bias = true)
    {
        long fanIn = inChannels * kernel * kernel;
        string w = Parameter($"{p}.weight", [outChannels, inChannels, kernel, kernel], FanIn(fanIn));
        string[] inputs = bias ? [x, w, Parameter($"{p}.bias", [outChannels], FanIn(fanIn))] : [x, w];
        long half = kernel / 2;
        return Op("Conv", p, inputs,
            new Attr("kernel_shape", new[] { kernel, kernel }),
            new Attr("strides", new[] { stride, stride }),
            new Attr("pads", pads ?? [half, half, half, half]),
            new Attr("dilations", new[] { 1L, 1L }),
            new Attr("group", 1L));
    }

    /// <summary>torch.nn.GroupNorm on [B, C, H, W]: Reshape → InstanceNormalization → Reshape → per-channel affine.</summary>
    public string GroupNorm(string x, string p, long channels, long groups, double eps)
    {
        if (channels % groups != 0)
            throw new ArgumentException($"{p}: {channels} channels are not divisible into {groups} groups");
        string grouped = Reshape(p, x, 0, groups, -1);
        string normed = Op("InstanceNormalization", p,
            [grouped, Floats([groups], Enumerable.Repeat(1.0, (int)groups).ToArray()), Floats([groups], new double[groups])],
            new Attr("epsilon", (float)eps));
        string restored = ReshapeTo(p, normed, Shape(p, x));
        string gamma = Unsqueeze(p, Parameter($"{p}.weight", [channels], new TensorFill.Constant(1)), 1, 2);
        string beta = Unsqueeze(p, Parameter($"{p}.bias", [channels], new TensorFill.Constant(0)), 1, 2);
        return Add(p, Mul(p, restored, gamma), beta);
    }

    /// <summary>torch.nn.LayerNorm over the last axis (LayerNormalization-17).</summary>
    public string LayerNorm(string x, string p, long dim, double eps = 1e-5)
    {
        string gamma = Parameter($"{p}.weight", [dim], new TensorFill.Constant(1));
        string beta = Parameter($"{p}.bias", [dim], new TensorFill.Constant(0));
        return Op("LayerNormalization", p, [x, gamma, beta], new Attr("axis", -1L), new Attr("epsilon", (float)eps));
    }

    public string Silu(string s, string x) => Mul(s, x, Sigmoid(s, x));

    /// <summary>CLIP's quick_gelu: x·σ(1.702x).</summary>
    public string QuickGelu(string s, string x) => Mul(s, x, Sigmoid(s, Mul(s, x, Scalar(1.702))));

    /// <summary>Exact GELU, 0.5·x·(1 + erf(x/√2)) (the Gelu operator needs opset 20).</summary>
    public string Gelu(string s, string x)
    {
        string erf = Op("Erf", s, [Mul(s, x, Scalar(1.0 / Math.Sqrt(2.0)))]);
        return Mul(s, Mul(s, x, Add(s, erf, Scalar(1.0))), Scalar(0.5));
    }

    /// <summary>
    /// Multi-head scaled dot-product attention on [B, S, C] values. <paramref name="context"/> null → self-attention.
    /// <paramref name="mask"/> is an additive [Sq, Sk] mask (CLIP's causal mask) or null.
    /// </summary>
    public string Attention(string x, string? context, string p, long queryDim, long contextDim, long heads, long headDim,
        AttentionNames names, bool qkvBias, string? mask = null)
    {
        long inner = heads * headDim;
        string kv = context ?? x;
        string q = Linear(x, $"{p}.{names.Query}", queryDim, inner, qkvBias);
        string k = Linear(kv, $"{p}.{names.Key}", contextDim, inner, qkvBias);
        string v = Linear(kv, $"{p}.{names.Value}", contextDim, inner, qkvBias);
        if (FusedAttention && mask is null)
        {
            // softmax(q·kᵀ/√d)·v per head on [B, S, heads·d]: the same computation in one node (its default scale is 1/√d).
            string fused = DomainOp(MicrosoftDomain, "MultiHeadAttention", p, [q, k, v], 1, new Attr("num_heads", heads))[0];
            return Linear(fused, $"{p}.{names.Out}", inner, queryDim);
        }

        q = Transpose(p, Reshape(p, Mul(p, q, Scalar(1.0 / Math.Sqrt(headDim))), 0, 0, heads, headDim), 0, 2, 1, 3);
        k = Transpose(p, Reshape(p, k, 0, 0, heads, headDim), 0, 2, 3, 1);
        v = Transpose(p, Reshape(p, v, 0, 0, heads, headDim), 0, 2, 1, 3);

        string scores = MatMul(p, q, k); // [B, h, Sq, Sk]
        if (mask is not null)
            scores = Add(p, scores, mask);
        string attended = MatMul(p, Softmax(p, scores), v); // [B, h, Sq, d]
        string merged = Reshape(p, Transpose(p, attended, 0, 2, 1, 3), 0, 0, inner);
        return Linear(merged, $"{p}.{names.Out}", inner, queryDim);
    }

    /// <summary>Nearest-neighbour ×2 up-sampling of [B, C, H, W] (F.interpolate(scale_factor=2, mode="nearest")).</summary>
    public string Upsample2x(string s, string x) =>
        Op("Resize", s, [x, "", Float32s([4], [1, 1, 2, 2])],
            new Attr("mode", "nearest"),
            new Attr("coordinate_transformation_mode", "asymmetric"),
            new Attr("nearest_mode", "floor"));

    /// <summary>
    /// Sinusoidal embedding of a 1-D tensor [N] of element type <paramref name="type"/> → [N, dim] of
    /// <see cref="ComputeType"/> (diffusers get_timestep_embedding: float32 maths, cast to the model's dtype after).
    /// </summary>
    public string TimestepEmbedding(string s, string t, ElementType type, long dim, bool flipSinToCos, double freqShift, double maxPeriod = 10000)
    {
        long half = dim / 2;
        var freqs = new double[half];
        for (int i = 0; i < half; i++)
            freqs[i] = (float)Math.Exp((float)(-Math.Log(maxPeriod) * i / (half - freqShift))); // float32 table, as torch
        string t32 = type == ElementType.Float ? t : Cast(s, t, ElementType.Float);
        string args = Mul(s, Unsqueeze(s, t32, 1), Float32s([1, half], freqs));
        string sin = Sin(s, args), cos = Cos(s, args);
        string embedding = flipSinToCos ? Concat(s, 1, cos, sin) : Concat(s, 1, sin, cos);
        return ComputeType == ElementType.Float ? embedding : Cast(s, embedding, ComputeType);
    }

    /// <summary>
    /// diffusers ResnetBlock2D: GN → SiLU → conv1 (+ time_emb_proj(SiLU(temb))) → GN → SiLU → conv2, plus a 1×1
    /// conv_shortcut when channels change. <paramref name="temb"/> is the (already SiLU'd) [N, tembDim] embedding or null.
    /// </summary>
    public string ResnetBlock(string x, string p, long inChannels, long outChannels, long groups, double eps,
        string? temb = null, long tembDim = 0)
    {
        string h = Silu(p, GroupNorm(x, $"{p}.norm1", inChannels, groups, eps));
        h = Conv2d(h, $"{p}.conv1", inChannels, outChannels, 3);
        if (temb is not null)
            h = Add(p, h, Unsqueeze(p, Linear(temb, $"{p}.time_emb_proj", tembDim, outChannels), 2, 3));
        h = Silu(p, GroupNorm(h, $"{p}.norm2", outChannels, groups, eps));
        h = Conv2d(h, $"{p}.conv2", outChannels, outChannels, 3);
        string shortcut = inChannels == outChannels ? x : Conv2d(x, $"{p}.conv_shortcut", inChannels, outChannels, 1);
        return Add(p, shortcut, h);
    }

    /// <summary>[B, C, H, W] → [B, H·W, C].</summary>
    public string ToTokens(string s, string x, long channels) => Transpose(s, Reshape(s, x, 0, channels, -1), 0, 2, 1);

    /// <summary>[B, H·W, C] → [B, C, H, W], with the spatial shape taken from <paramref name="shapeOf"/>.</summary>
    public string FromTokens(string s, string tokens, string shapeOf) =>
        ReshapeTo(s, Transpose(s, tokens, 0, 2, 1), Shape(s, shapeOf));
}
