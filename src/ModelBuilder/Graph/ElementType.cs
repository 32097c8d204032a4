namespace RenderFarm.ModelBuilder.Graph;

/// <summary>ONNX tensor element types used by the builder (values are TensorProto.DataType numbers).</summary>
public enum ElementType
{
    Float = 1,
    Int32 = 6,
    Int64 = 7,
    Float16 = 10,
    Double = 11,
}
