namespace RenderFarm.ModelBuilder.Graph;

public static class ElementTypeExtensions
{
    public static int ByteSize(this ElementType type) => type switch
    {
        ElementType.Float => 4,
        ElementType.Int32 => 4,
        ElementType.Int64 => 8,
        ElementType.Float16 => 2,
        ElementType.Double => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, null),
    };

    public static string OnnxName(this ElementType type) => type switch
    {
        ElementType.Float => "float32",
        ElementType.Int32 => "int32",
        ElementType.Int64 => "int64",
        ElementType.Float16 => "float16",
        ElementType.Double => "float64",
        _ => type.ToString(),
    };
}
