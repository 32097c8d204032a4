namespace RenderFarm.ModelBuilder.Tests;

/// <summary>An image-like activation of one sample: C × H × W, row-major.</summary>
internal sealed record Img(double[] D, int C, int H, int W)
{
    public int HW => H * W;
}

/// <summary>
/// A deliberately naive float64 forward pass of the Stable Diffusion components, written from the architecture
/// (transformers CLIPTextModel, diffusers UNet2DConditionModel / AutoencoderKL) without the graph builder: plain loops
/// over one sample at a time, weights read by their PyTorch names from the written ONNX file.
/// Linear weights are stored [in, out]; conv weights [out, in, k, k].
/// </summary>
internal sealed class ReferenceModel(OnnxWeights w)
{
    // ---------- text encoder ----------

    /// <summary>Returns last_hidden_state [S·H], pooled [H] and every hidden state (embeddings, after each layer).</summary>
    public (double[] Last, double[] Pooled, List<double[]> Hidden) ClipText(int[] ids, TextEncoderConfig c, bool quickGelu)
    {
        int s = ids.Length, h = c.Hidden;
        var tok = w["text_model.embeddings.token_embedding.weight"];
        var pos = w["text_model.embeddings.position_embedding.weight"];
        var x = new double[s * h];
        for (int i = 0; i < s; i++)
            for (int j = 0; j < h; j++)
                x[i * h + j] = tok[ids[i] * h + j] + pos[i * h + j];
        var hidden = new List<double[]> { x };
        for (int l = 0; l < c.Layers; l++)
        {
            string p = $"text_model.encoder.layers.{l}";
            var a = LayerNorm(x, s, h, $"{p}.layer_norm1", c.LayerNormEps);
            a = Attention(a, s, a, s, h, h, c.Heads, h / c.Heads, $"{p}.self_attn", "q_proj", "k_proj", "v_proj", "out_proj", true, causal: true);
            x = AddInto(x, a);
            var m = LayerNorm(x, s, h, $"{p}.layer_norm2", c.LayerNormEps);
            m = Linear(m, s, h, c.Intermediate, $"{p}.mlp.fc1");
            m = m.Select(v => quickGelu ? v / (1 + Math.Exp(-1.702 * v)) : Gelu(v)).ToArray();
            m = Linear(m, s, c.Intermediate, h, $"{p}.mlp.fc2");
            x = AddInto(x, m);
            hidden.Add(x);
        }
        var last = LayerNorm(x, s, h, "text_model.final_layer_norm", c.LayerNormEps);
        int eos = 0;
        for (int i = 1; i < s; i++)
            if (ids[i] > ids[eos]) eos = i;
        return (last, last.AsSpan(eos * h, h).ToArray(), hidden);
    }

    // ---------- VAE ----------

    /// <summary>
    /// diffusers DecoderTiny (TAESD): tanh(z/3)·3, conv, ReLU, then per stage its AutoencoderTinyBlocks, an upsample
    /// (all stages but the last) and a conv (bias only in the last, which writes RGB); the result mapped [0, 1] → [−1, 1].
    /// Module indices count through the Sequential as PyTorch numbers them.
    /// </summary>
    public Img TinyDecoder(Img z, Components.TinyDecoderConfig c)
    {
        var x = z with { D = z.D.Select(v => Math.Tanh(v / 3) * 3).ToArray() };
        int layer = 0;
        x = Relu(Conv(x, $"decoder.layers.{layer++}", 3, 1, [1, 1, 1, 1]));
        layer++; // the ReLU
        for (int i = 0; i < c.Blocks.Length; i++)
        {
            bool last = i == c.Blocks.Length - 1;
            for (int b = 0; b < c.Blocks[i]; b++)
            {
                string p = $"decoder.layers.{layer++}";
                var h = Relu(Conv(x, $"{p}.conv.0", 3, 1, [1, 1, 1, 1]));
                h = Relu(Conv(h, $"{p}.conv.2", 3, 1, [1, 1, 1, 1]));
                h = Conv(h, $"{p}.conv.4", 3, 1, [1, 1, 1, 1]);
                x = Relu(h with { D = AddInto(h.D, x.D) });
            }
            if (!last)
            {
                x = Upsample(x);
                layer++;
            }
            x = Conv(x, $"decoder.layers.{layer++}", 3, 1, [1, 1, 1, 1], bias: last);
        }
        return x with { D = x.D.Select(v => v * 2 - 1).ToArray() };
    }

    public Img VaeDecoder(Img z, VaeConfig c)
    {
        int n = c.BlockOut.Length, g = c.NormGroups;
        double eps = c.NormEps;
        var x = Conv(z, "post_quant_conv", 1, 1, [0, 0, 0, 0]);
        x = Conv(x, "decoder.conv_in", 3, 1, [1, 1, 1, 1]);
        x = VaeMid(x, "decoder.mid_block", g, eps);
        for (int i = 0; i < n; i++)
        {
            int outC = c.BlockOut[n - 1 - i];
            for (int j = 0; j < c.LayersPerBlock + 1; j++)
                x = Resnet(x, $"decoder.up_blocks.{i}.resnets.{j}", outC, g, eps, null);
            if (i < n - 1)
                x = Conv(Upsample(x), $"decoder.up_blocks.{i}.upsamplers.0.conv", 3, 1, [1, 1, 1, 1]);
        }
        x = Silu(GroupNorm(x, "decoder.conv_norm_out", g, eps));
        return Conv(x, "decoder.conv_out", 3, 1, [1, 1, 1, 1]);
    }

    public Img VaeEncoderMean(Img image, VaeConfig c)
    {
        int n = c.BlockOut.Length, g = c.NormGroups;
        double eps = c.NormEps;
        var x = Conv(image, "encoder.conv_in", 3, 1, [1, 1, 1, 1]);
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < c.LayersPerBlock; j++)
                x = Resnet(x, $"encoder.down_blocks.{i}.resnets.{j}", c.BlockOut[i], g, eps, null);
            if (i < n - 1)
                x = Conv(x, $"encoder.down_blocks.{i}.downsamplers.0.conv", 3, 2, [0, 0, 1, 1]);
        }
        x = VaeMid(x, "encoder.mid_block", g, eps);
        x = Silu(GroupNorm(x, "encoder.conv_norm_out", g, eps));
        x = Conv(Conv(x, "encoder.conv_out", 3, 1, [1, 1, 1, 1]), "quant_conv", 1, 1, [0, 0, 0, 0]);
        return x with { D = x.D.AsSpan(0, c.LatentChannels * x.HW).ToArray(), C = c.LatentChannels };
    }

    private Img VaeMid(Img x, string p, int groups, double eps)
    {
        x = Resnet(x, $"{p}.resnets.0", x.C, groups, eps, null);
        string a = $"{p}.attentions.0";
        var tokens = ToTokens(GroupNorm(x, $"{a}.group_norm", groups, eps));
        tokens = Attention(tokens, x.HW, tokens, x.HW, x.C, x.C, 1, x.C, a, "to_q", "to_k", "to_v", "to_out.0", true, false);
        x = x with { D = AddInto(x.D, FromTokens(tokens, x.C, x.H, x.W).D) };
        return Resnet(x, $"{p}.resnets.1", x.C, groups, eps, null);
    }

    // ---------- UNet ----------

    /// <summary>One sample of UNet2DConditionModel. <paramref name="context"/> is [S·Cctx].</summary>
    public Img UNet(Img sample, double timestep, double[] context, int contextLength, UNetConfig c,
        double[]? textEmbeds = null, double[]? timeIds = null, double[]? timestepCond = null)
    {
        int n = c.BlockOut.Length, g = c.NormGroups;
        double eps = c.NormEps;
        var temb = TimeEmbedding(timestep, c, textEmbeds, timeIds, timestepCond);
        var (skipList, x) = DownAndMid(Conv(sample, "conv_in", 3, 1, [1, 1, 1, 1]), temb, context, contextLength, c);
        var skips = new Stack<Img>(skipList);
        for (int i = 0; i < n; i++)
        {
            int level = n - 1 - i;
            for (int j = 0; j < c.LayersPerBlock + 1; j++)
            {
                var skip = skips.Pop();
                x = new Img([.. x.D, .. skip.D], x.C + skip.C, x.H, x.W); // channel concatenation
                x = Resnet(x, $"up_blocks.{i}.resnets.{j}", c.BlockOut[level], g, eps, temb);
                if (c.CrossAttention[level])
                    x = Transformer(x, $"up_blocks.{i}.attentions.{j}", c.Heads[level], c.TransformerLayersAt(level), context, contextLength, c);
            }
            if (i < n - 1)
                x = Conv(Upsample(x), $"up_blocks.{i}.upsamplers.0.conv", 3, 1, [1, 1, 1, 1]);
        }
        x = Silu(GroupNorm(x, "conv_norm_out", g, eps));
        return Conv(x, "conv_out", 3, 1, [1, 1, 1, 1]);
    }

    /// <summary>The time embedding after the SiLU every resnet applies: time_embedding, SDXL's add_embedding, LCM's cond_proj.</summary>
    private double[] TimeEmbedding(double timestep, UNetConfig c, double[]? textEmbeds, double[]? timeIds, double[]? timestepCond)
    {
        int c0 = c.BlockOut[0];
        var timeProj = SinusoidalEmbedding(timestep, c0);
        if (c.TimeCondProjDim is int condDim) // TimestepEmbedding: sample + cond_proj(condition), before linear_1
            timeProj = AddInto(timeProj, Linear(timestepCond!, 1, condDim, c0, "time_embedding.cond_proj", bias: false));
        var emb = TimestepMlp(timeProj, "time_embedding");
        if (c.Sdxl is { } sdxl)
        {
            var add = new List<double>(textEmbeds!);
            foreach (double id in timeIds!)
                add.AddRange(SinusoidalEmbedding(id, sdxl.AdditionTimeEmbedDim));
            emb = AddInto(emb, TimestepMlp(add.ToArray(), "add_embedding"));
        }
        return emb.Select(SiluScalar).ToArray();
    }

    /// <summary>The down path from conv_in's output <paramref name="x"/>: every skip in order (conv_in's first), and the mid block's output.</summary>
    private (List<Img> Skips, Img Mid) DownAndMid(Img x, double[] temb, double[] context, int contextLength, UNetConfig c)
    {
        int n = c.BlockOut.Length, g = c.NormGroups;
        double eps = c.NormEps;
        var skips = new List<Img> { x };
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < c.LayersPerBlock; j++)
            {
                x = Resnet(x, $"down_blocks.{i}.resnets.{j}", c.BlockOut[i], g, eps, temb);
                if (c.CrossAttention[i])
                    x = Transformer(x, $"down_blocks.{i}.attentions.{j}", c.Heads[i], c.TransformerLayersAt(i), context, contextLength, c);
                skips.Add(x);
            }
            if (i < n - 1)
            {
                x = Conv(x, $"down_blocks.{i}.downsamplers.0.conv", 3, 2, [1, 1, 1, 1]);
                skips.Add(x);
            }
        }
        x = Resnet(x, "mid_block.resnets.0", x.C, g, eps, temb);
        x = Transformer(x, "mid_block.attentions.0", c.Heads[^1], c.TransformerLayersAt(n - 1), context, contextLength, c);
        x = Resnet(x, "mid_block.resnets.1", x.C, g, eps, temb);
        return (skips, x);
    }

    // ---------- ControlNet ----------

    /// <summary>
    /// One sample of diffusers ControlNetModel: the UNet's embedding and down/mid path on conv_in(sample) plus the
    /// conditioning embedding of <paramref name="image"/> [3, 8h, 8w], then a 1×1 zero conv per residual, times
    /// <paramref name="scale"/>. Returns the down residuals, then the mid one.
    /// </summary>
    public List<Img> ControlNet(Img sample, double timestep, double[] context, int contextLength, Img image, ControlNetConfig cn, double scale,
        double[]? textEmbeds = null, double[]? timeIds = null)
    {
        var c = cn.UNet;
        var temb = TimeEmbedding(timestep, c, textEmbeds, timeIds, null);
        const string p = "controlnet_cond_embedding";
        var h = Silu(Conv(image, $"{p}.conv_in", 3, 1, [1, 1, 1, 1]));
        for (int i = 0; i < cn.EmbeddingOut.Length - 1; i++)
        {
            h = Silu(Conv(h, $"{p}.blocks.{2 * i}", 3, 1, [1, 1, 1, 1]));
            h = Silu(Conv(h, $"{p}.blocks.{2 * i + 1}", 3, 2, [1, 1, 1, 1]));
        }
        h = Conv(h, $"{p}.conv_out", 3, 1, [1, 1, 1, 1]);
        var x = Conv(sample, "conv_in", 3, 1, [1, 1, 1, 1]);
        x = x with { D = AddInto(x.D, h.D) };
        var (skips, mid) = DownAndMid(x, temb, context, contextLength, c);
        Img Scaled(Img r) => r with { D = r.D.Select(v => v * scale).ToArray() };
        var residuals = skips.Select((skip, k) => Scaled(Conv(skip, $"controlnet_down_blocks.{k}", 1, 1, [0, 0, 0, 0]))).ToList();
        residuals.Add(Scaled(Conv(mid, "controlnet_mid_block", 1, 1, [0, 0, 0, 0])));
        return residuals;
    }

    /// <summary>diffusers get_timestep_embedding(flip_sin_to_cos=True, downscale_freq_shift=0), with torch's float32
    /// frequency table and float32 argument product.</summary>
    private static double[] SinusoidalEmbedding(double t, int dim)
    {
        int half = dim / 2;
        var e = new double[dim];
        for (int i = 0; i < half; i++)
        {
            float freq = (float)Math.Exp((float)(-Math.Log(10000) * i / half));
            double arg = (float)((float)t * freq);
            e[i] = Math.Cos(arg);
            e[half + i] = Math.Sin(arg);
        }
        return e;
    }

    private double[] TimestepMlp(double[] x, string p)
    {
        int inDim = (int)w.Dims($"{p}.linear_1.weight")[0], dim = (int)w.Dims($"{p}.linear_1.weight")[1];
        var h = Linear(x, 1, inDim, dim, $"{p}.linear_1").Select(SiluScalar).ToArray();
        return Linear(h, 1, dim, dim, $"{p}.linear_2");
    }

    private Img Transformer(Img x, string p, int heads, int layers, double[] ctx, int ctxLen, UNetConfig c)
    {
        int ch = x.C, hw = x.HW, d = ch / heads;
        var h = GroupNorm(x, $"{p}.norm", c.NormGroups, 1e-6);
        double[] tokens;
        if (c.LinearProjection)
            tokens = Linear(ToTokens(h), hw, ch, ch, $"{p}.proj_in");
        else
            tokens = ToTokens(Conv(h, $"{p}.proj_in", 1, 1, [0, 0, 0, 0]));
        for (int b = 0; b < layers; b++)
        {
            string q = $"{p}.transformer_blocks.{b}";
            var a = LayerNorm(tokens, hw, ch, $"{q}.norm1", 1e-5);
            tokens = AddInto(tokens, Attention(a, hw, a, hw, ch, ch, heads, d, $"{q}.attn1", "to_q", "to_k", "to_v", "to_out.0", false, false));
            a = LayerNorm(tokens, hw, ch, $"{q}.norm2", 1e-5);
            tokens = AddInto(tokens, Attention(a, hw, ctx, ctxLen, ch, c.ContextDim, heads, d, $"{q}.attn2", "to_q", "to_k", "to_v", "to_out.0", false, false));
            a = LayerNorm(tokens, hw, ch, $"{q}.norm3", 1e-5);
            var proj = Linear(a, hw, ch, 8 * ch, $"{q}.ff.net.0.proj");
            var gated = new double[hw * 4 * ch];
            for (int r = 0; r < hw; r++)
                for (int k = 0; k < 4 * ch; k++)
                    gated[r * 4 * ch + k] = proj[r * 8 * ch + k] * Gelu(proj[r * 8 * ch + 4 * ch + k]);
            tokens = AddInto(tokens, Linear(gated, hw, 4 * ch, ch, $"{q}.ff.net.2"));
        }
        Img result = c.LinearProjection
            ? FromTokens(Linear(tokens, hw, ch, ch, $"{p}.proj_out"), ch, x.H, x.W)
            : Conv(FromTokens(tokens, ch, x.H, x.W), $"{p}.proj_out", 1, 1, [0, 0, 0, 0]);
        return result with { D = AddInto(result.D, x.D) };
    }

    // ---------- layers ----------

    private Img Resnet(Img x, string p, int outC, int groups, double eps, double[]? temb)
    {
        var h = Conv(Silu(GroupNorm(x, $"{p}.norm1", groups, eps)), $"{p}.conv1", 3, 1, [1, 1, 1, 1]);
        if (temb is not null)
        {
            var t = Linear(temb, 1, temb.Length, outC, $"{p}.time_emb_proj");
            for (int ch = 0; ch < outC; ch++)
                for (int i = 0; i < h.HW; i++)
                    h.D[ch * h.HW + i] += t[ch];
        }
        h = Conv(Silu(GroupNorm(h, $"{p}.norm2", groups, eps)), $"{p}.conv2", 3, 1, [1, 1, 1, 1]);
        var shortcut = x.C == outC ? x : Conv(x, $"{p}.conv_shortcut", 1, 1, [0, 0, 0, 0]);
        return h with { D = AddInto(h.D, shortcut.D) };
    }

    /// <summary>Cross-correlation with pads [top, left, bottom, right]; <paramref name="bias"/> false: torch's Conv2d(bias=False).</summary>
    private Img Conv(Img x, string p, int k, int stride, int[] pads, bool bias = true)
    {
        var weight = w[$"{p}.weight"];
        int outC = (int)w.Dims($"{p}.weight")[0];
        var biases = bias ? w[$"{p}.bias"] : new double[outC];
        int oh = (x.H + pads[0] + pads[2] - k) / stride + 1, ow = (x.W + pads[1] + pads[3] - k) / stride + 1;
        var y = new double[outC * oh * ow];
        for (int o = 0; o < outC; o++)
            for (int yy = 0; yy < oh; yy++)
                for (int xx = 0; xx < ow; xx++)
                {
                    double sum = biases[o];
                    for (int ci = 0; ci < x.C; ci++)
                        for (int ky = 0; ky < k; ky++)
                        {
                            int iy = yy * stride + ky - pads[0];
                            if (iy < 0 || iy >= x.H) continue;
                            for (int kx = 0; kx < k; kx++)
                            {
                                int ix = xx * stride + kx - pads[1];
                                if (ix < 0 || ix >= x.W) continue;
                                sum += weight[((o * x.C + ci) * k + ky) * k + kx] * x.D[(ci * x.H + iy) * x.W + ix];
                            }
                        }
                    y[(o * oh + yy) * ow + xx] = sum;
                }
        return new Img(y, outC, oh, ow);
    }

    private Img GroupNorm(Img x, string p, int groups, double eps)
    {
        var gamma = w[$"{p}.weight"];
        var beta = w[$"{p}.bias"];
        int per = x.C / groups, n = per * x.HW;
        var y = new double[x.D.Length];
        for (int g = 0; g < groups; g++)
        {
            var span = x.D.AsSpan(g * n, n);
            double mean = 0, var = 0;
            foreach (double v in span) mean += v;
            mean /= n;
            foreach (double v in span) var += (v - mean) * (v - mean);
            var /= n;
            double inv = 1 / Math.Sqrt(var + eps);
            for (int i = 0; i < n; i++)
            {
                int ch = g * per + i / x.HW;
                y[g * n + i] = (span[i] - mean) * inv * gamma[ch] + beta[ch];
            }
        }
        return x with { D = y };
    }

    private static Img Relu(Img x) => x with { D = x.D.Select(v => Math.Max(v, 0)).ToArray() };

    private static Img Silu(Img x) => x with { D = x.D.Select(SiluScalar).ToArray() };

    private static double SiluScalar(double v) => v / (1 + Math.Exp(-v));

    private static double Gelu(double v) => 0.5 * v * (1 + Erf(v / Math.Sqrt(2)));

    private static Img Upsample(Img x)
    {
        var y = new double[x.C * 4 * x.HW];
        int w2 = x.W * 2;
        for (int c = 0; c < x.C; c++)
            for (int yy = 0; yy < x.H * 2; yy++)
                for (int xx = 0; xx < w2; xx++)
                    y[(c * x.H * 2 + yy) * w2 + xx] = x.D[(c * x.H + yy / 2) * x.W + xx / 2];
        return new Img(y, x.C, x.H * 2, x.W * 2);
    }

    private static double[] ToTokens(Img x)
    {
        var t = new double[x.D.Length];
        for (int c = 0; c < x.C; c++)
            for (int i = 0; i < x.HW; i++)
                t[i * x.C + c] = x.D[c * x.HW + i];
        return t;
    }

    private static Img FromTokens(double[] t, int channels, int h, int wd)
    {
        var d = new double[t.Length];
        for (int c = 0; c < channels; c++)
            for (int i = 0; i < h * wd; i++)
                d[c * h * wd + i] = t[i * channels + c];
        return new Img(d, channels, h, wd);
    }

    private double[] Linear(double[] x, int rows, int inF, int outF, string p, bool? bias = null)
    {
        var weight = w[$"{p}.weight"];
        double[]? b = bias == false || !w.Names.Contains($"{p}.bias") ? null : w[$"{p}.bias"];
        var y = new double[rows * outF];
        for (int r = 0; r < rows; r++)
            for (int o = 0; o < outF; o++)
            {
                double sum = b?[o] ?? 0;
                for (int i = 0; i < inF; i++)
                    sum += x[r * inF + i] * weight[i * outF + o];
                y[r * outF + o] = sum;
            }
        return y;
    }

    private double[] LayerNorm(double[] x, int rows, int dim, string p, double eps)
    {
        var gamma = w[$"{p}.weight"];
        var beta = w[$"{p}.bias"];
        var y = new double[x.Length];
        for (int r = 0; r < rows; r++)
        {
            var row = x.AsSpan(r * dim, dim);
            double mean = 0, var = 0;
            foreach (double v in row) mean += v;
            mean /= dim;
            foreach (double v in row) var += (v - mean) * (v - mean);
            var /= dim;
            for (int i = 0; i < dim; i++)
                y[r * dim + i] = (row[i] - mean) / Math.Sqrt(var + eps) * gamma[i] + beta[i];
        }
        return y;
    }

    /// <summary>softmax(QKᵀ/√d)V per head, then the output projection.</summary>
    private double[] Attention(double[] x, int sq, double[] ctx, int sk, int qDim, int cDim, int heads, int d, string p,
        string qn, string kn, string vn, string on, bool qkvBias, bool causal)
    {
        int inner = heads * d;
        var q = Linear(x, sq, qDim, inner, $"{p}.{qn}", qkvBias);
        var k = Linear(ctx, sk, cDim, inner, $"{p}.{kn}", qkvBias);
        var v = Linear(ctx, sk, cDim, inner, $"{p}.{vn}", qkvBias);
        var o = new double[sq * inner];
        var scores = new double[sk];
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < sq; i++)
            {
                double max = double.NegativeInfinity;
                int limit = causal ? i + 1 : sk;
                for (int j = 0; j < limit; j++)
                {
                    double s = 0;
                    for (int e = 0; e < d; e++)
                        s += q[i * inner + h * d + e] * k[j * inner + h * d + e];
                    scores[j] = s / Math.Sqrt(d);
                    max = Math.Max(max, scores[j]);
                }
                double total = 0;
                for (int j = 0; j < limit; j++)
                    total += scores[j] = Math.Exp(scores[j] - max);
                for (int j = 0; j < limit; j++)
                    for (int e = 0; e < d; e++)
                        o[i * inner + h * d + e] += scores[j] / total * v[j * inner + h * d + e];
            }
        return Linear(o, sq, inner, qDim, $"{p}.{on}");
    }

    private static double[] AddInto(double[] a, double[] b) => a.Zip(b, (x, y) => x + y).ToArray();

    /// <summary>erf by Abramowitz–Stegun is too coarse for 1e-4; use a series / continued fraction to ~1e-15.</summary>
    private static double Erf(double x)
    {
        double ax = Math.Abs(x);
        double r;
        if (ax < 2.5)
        {
            // Maclaurin series: erf(x) = 2/√π Σ (-1)^n x^(2n+1) / (n! (2n+1))
            double term = ax, sum = ax, x2 = ax * ax;
            for (int n = 1; n < 200; n++)
            {
                term *= -x2 / n;
                double add = term / (2 * n + 1);
                sum += add;
                if (Math.Abs(add) < 1e-17) break;
            }
            r = 2 / Math.Sqrt(Math.PI) * sum;
        }
        else
        {
            // erfc continued fraction (Lentz), accurate for x ≥ 2.5
            double f = ax, c = ax, dd = 0;
            for (int n = 1; n < 200; n++)
            {
                double an = n / 2.0;
                dd = ax + an * dd; dd = 1 / dd;
                c = ax + an / c;
                double delta = c * dd;
                f *= delta;
                if (Math.Abs(delta - 1) < 1e-16) break;
            }
            r = 1 - Math.Exp(-ax * ax) / Math.Sqrt(Math.PI) / f;
        }
        return x < 0 ? -r : r;
    }
}
