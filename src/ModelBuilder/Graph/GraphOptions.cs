namespace RenderFarm.ModelBuilder.Graph;

/// <summary>
/// How a component's graph is written: <see cref="WeightType"/> stores the parameters (and types the inputs and
/// outputs), <see cref="ComputeType"/> types the activations (float16 as a torch model in half precision computes;
/// float16 parameters of a float32 graph get a Cast, which ORT folds at load), and <see cref="FusedAttention"/> writes
/// unmasked attention as one com.microsoft.MultiHeadAttention node, as ONNX Runtime's Stable Diffusion optimiser leaves
/// an export, instead of the MatMul/Softmax/MatMul chain of a torch export (on a GPU the fused kernel never
/// materialises the [B, heads, S, S] scores). <see cref="TorchExportNames"/> names the graph as torch.onnx.export does:
/// nodes by module path with slashes (<c>/down_blocks.0/attentions.0/transformer_blocks.0/attn1/to_q/MatMul</c>) and
/// Linear weights <c>onnx::MatMul_N</c> (stored [in, out] either way), conv weights and biases keeping their names;
/// the weights' values do not depend on the style.
/// </summary>
public sealed record GraphOptions(ElementType WeightType = ElementType.Float, ElementType ComputeType = ElementType.Float, bool FusedAttention = false,
    bool TorchExportNames = false);
