using System.Buffers.Binary;
using System.Text;
using RenderFarm.Diffusion.SafeTensors;

namespace RenderFarm.Diffusion.Tests;

public class SafeTensorsTests
{
    private static string Write(string header, byte[] data)
    {
        var path = Path.Combine(Path.GetTempPath(), $"rf-st-{Guid.NewGuid():N}.safetensors");
        var json = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + data.Length];
        BinaryPrimitives.WriteInt64LittleEndian(bytes, json.Length);
        json.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + json.Length);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Fact]
    public void F32F16AndBF16TensorsReadAsFloat32()
    {
        var data = new byte[8 + 4 + 4];
        BinaryPrimitives.WriteSingleLittleEndian(data, 1.5f);
        BinaryPrimitives.WriteSingleLittleEndian(data.AsSpan(4), -2f);
        BinaryPrimitives.WriteHalfLittleEndian(data.AsSpan(8), (Half)0.25f);
        BinaryPrimitives.WriteHalfLittleEndian(data.AsSpan(10), (Half)(-3f));
        BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(12), (ushort)(BitConverter.SingleToUInt32Bits(3.5f) >> 16));
        BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(14), (ushort)(BitConverter.SingleToUInt32Bits(-0.125f) >> 16));
        var path = Write("""
            {"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[1,2],"data_offsets":[8,12]},
             "c":{"dtype":"BF16","shape":[2],"data_offsets":[12,16]},"__metadata__":{"ss_network_dim":"4"}}
            """, data);
        try
        {
            using var file = SafeTensorsFile.Open(path);
            Assert.Equal([1.5f, -2f], file.ReadFloats("a"));
            Assert.Equal([0.25f, -3f], file.ReadFloats("b"));
            Assert.Equal([3.5f, -0.125f], file.ReadFloats("c"));
            Assert.Equal(new long[] { 1, 2 }, file.Info("b").Shape);
            Assert.Equal("4", file.Metadata["ss_network_dim"]);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData("""{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", "needs 12 bytes")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,80]}}""", "ends at byte 80")]
    [InlineData("""{"a":{"dtype":"F32"}}""", "lacks dtype, shape or data_offsets")]
    [InlineData("""[1, 2]""", "not a JSON object")]
    public void ABrokenHeaderIsRefusedSayingWhy(string header, string reason)
    {
        var path = Write(header, new byte[8]);
        try
        {
            var ex = Assert.Throws<InvalidDataException>(() => SafeTensorsFile.Open(path).Dispose());
            Assert.Contains(reason, ex.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void AnUnsupportedTypeIsRefusedWhenReadNamingTheTensor()
    {
        var path = Write("""{"q":{"dtype":"I8","shape":[8],"data_offsets":[0,8]}}""", new byte[8]);
        try
        {
            using var file = SafeTensorsFile.Open(path);
            var ex = Assert.Throws<InvalidDataException>(() => file.ReadFloats("q"));
            Assert.Contains("'q' is I8", ex.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
