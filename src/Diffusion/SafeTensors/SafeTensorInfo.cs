namespace RenderFarm.Diffusion.SafeTensors;

/// <summary>One tensor's entry in a safetensors header: its element type, shape and byte range in the data section.</summary>
public sealed record SafeTensorInfo(string Name, SafeTensorType Type, long[] Shape, long Offset, long Length)
{
    public long ElementCount => Shape.Aggregate(1L, (a, d) => a * d);
}
