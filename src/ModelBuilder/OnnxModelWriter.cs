using Google.Protobuf;
using RenderFarm.ModelBuilder.Graph;
using RenderFarm.ModelBuilder.Onnx;

namespace RenderFarm.ModelBuilder;

/// <summary>
/// Serialises a <see cref="GraphBuilder"/> as an ONNX model (IR 8, default-domain opset 17). Weights are generated
/// from the seed while writing. Above <see cref="ExternalDataThreshold"/> bytes every parameter goes to
/// "model.onnx_data" next to model.onnx (data_location EXTERNAL, relative location, offset, length), streamed tensor by
/// tensor so no weight is held in memory twice. Protobuf caps a file at 2 GiB, so the full-size UNet must use external
/// data; the lower default threshold also puts sd15's text encoder and VAE there, because ONNX Runtime memory-maps
/// external data (session creation in well under a second) while an inline model must be parsed and copied.
/// </summary>
public static class OnnxModelWriter
{
    public const long IrVersion = 8;
    public const long Opset = 17;
    public const string ExternalDataFileName = "model.onnx_data";

    /// <summary>Components with more weight bytes than this (100 MiB) use external data.</summary>
    public const long ExternalDataThreshold = 100L << 20;

    /// <param name="replace">Bytes to write instead of an initializer's generated values (its ByteCount long), or null to generate them.</param>
    public static void Write(GraphBuilder graph, string path, ulong seed, long externalDataThreshold = ExternalDataThreshold,
        Func<Initializer, byte[]?>? replace = null)
    {
        var g = new GraphProto { Name = graph.Name };
        g.Node.AddRange(graph.Nodes);
        g.Input.AddRange(graph.Inputs.Select(ToValueInfo));
        g.Output.AddRange(graph.Outputs.Select(ToValueInfo));

        long totalBytes = graph.Initializers.Sum(i => i.ByteCount);
        bool external = totalBytes > externalDataThreshold;
        string dataPath = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, ExternalDataFileName);
        using (var data = external ? new FileStream(dataPath, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20) : null)
        {
            foreach (var init in graph.Initializers)
            {
                var tensor = new TensorProto { Name = init.Name, DataType = (int)init.Type };
                tensor.Dims.AddRange(init.Dims);
                if (data is not null && init.IsParameter)
                {
                    long alignment = init.ByteCount >= (1 << 20) ? 4096 : 64;
                    long offset = (data.Position + alignment - 1) / alignment * alignment;
                    if (offset > data.Position)
                        data.Write(new byte[offset - data.Position]);
                    if (replace?.Invoke(init) is { } replaced)
                        data.Write(Checked(init, replaced));
                    else
                        init.WriteData(data, seed);
                    tensor.DataLocation = TensorProto.Types.DataLocation.External;
                    tensor.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = ExternalDataFileName });
                    tensor.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString() });
                    tensor.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = init.ByteCount.ToString() });
                }
                else
                {
                    tensor.RawData = UnsafeByteOperations.UnsafeWrap(replace?.Invoke(init) is { } replaced ? Checked(init, replaced) : init.ToBytes(seed));
                }
                g.Initializer.Add(tensor);
            }
        }

        var model = new ModelProto
        {
            IrVersion = IrVersion,
            ProducerName = "RenderFarm.ModelBuilder",
            ProducerVersion = "1.0",
            Graph = g,
        };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Opset });
        if (g.Node.Any(n => n.Domain == GraphBuilder.MicrosoftDomain))
            model.OpsetImport.Add(new OperatorSetIdProto { Domain = GraphBuilder.MicrosoftDomain, Version = 1 });
        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        model.WriteTo(file);
    }

    private static byte[] Checked(Initializer init, byte[] bytes) =>
        bytes.LongLength == init.ByteCount ? bytes : throw new ArgumentException($"{init.Name}: {bytes.Length} replacement bytes for {init.ByteCount}");

    private static ValueInfoProto ToValueInfo(GraphValue value)
    {
        var shape = new TensorShapeProto();
        foreach (var d in value.Dims)
            shape.Dim.Add(d.Param is { } p ? new TensorShapeProto.Types.Dimension { DimParam = p }
                                           : new TensorShapeProto.Types.Dimension { DimValue = d.Value!.Value });
        return new ValueInfoProto
        {
            Name = value.Name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)value.Type, Shape = shape } },
        };
    }
}
