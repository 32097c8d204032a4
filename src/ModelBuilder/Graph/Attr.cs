using Google.Protobuf;
using RenderFarm.ModelBuilder.Onnx;

namespace RenderFarm.ModelBuilder.Graph;

/// <summary>A node attribute. Value is long, float, string, long[] or float[].</summary>
public readonly record struct Attr(string Name, object Value)
{
    internal AttributeProto ToProto()
    {
        var a = new AttributeProto { Name = Name };
        switch (Value)
        {
            case int i: a.Type = AttributeProto.Types.AttributeType.Int; a.I = i; break;
            case long l: a.Type = AttributeProto.Types.AttributeType.Int; a.I = l; break;
            case float f: a.Type = AttributeProto.Types.AttributeType.Float; a.F = f; break;
            case double d: a.Type = AttributeProto.Types.AttributeType.Float; a.F = (float)d; break;
            case string s: a.Type = AttributeProto.Types.AttributeType.String; a.S = ByteString.CopyFromUtf8(s); break;
            case long[] ls: a.Type = AttributeProto.Types.AttributeType.Ints; a.Ints.AddRange(ls); break;
            case int[] ints: a.Type = AttributeProto.Types.AttributeType.Ints; a.Ints.AddRange(ints.Select(x => (long)x)); break;
            case float[] fs: a.Type = AttributeProto.Types.AttributeType.Floats; a.Floats.AddRange(fs); break;
            default: throw new ArgumentException($"unsupported attribute value for {Name}: {Value?.GetType()}");
        }
        return a;
    }
}
