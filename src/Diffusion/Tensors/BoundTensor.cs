using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace RenderFarm.Diffusion.Tensors;

/// <summary>
/// A tensor a session binds where the models run: its pinned host buffer on the CPU, its <see cref="DeviceTensor"/>
/// twin on a GPU. <see cref="Write"/> and <see cref="Read"/> move values in and out as float32 wherever it lives.
/// </summary>
internal sealed class BoundTensor : IDisposable
{
    private readonly TensorBuffer _host;
    private readonly DeviceTensor? _device;

    /// <param name="deviceId">The CUDA device, or null for host memory.</param>
    /// <param name="shape">The shape; the values are float32.</param>
    /// <param name="pageLock">Whether the host twin is page-locked: for tensors written every step.</param>
    public BoundTensor(int? deviceId, long[] shape, bool pageLock = false)
    {
        _host = TensorBuffer.Create(TensorElementType.Float, shape);
        try
        {
            _device = deviceId is int device ? new DeviceTensor(_host, device, pageLock) : null;
        }
        catch
        {
            _host.Dispose();
            throw;
        }
    }

    /// <summary>What a binding binds.</summary>
    public OrtValue Value => _device?.Value ?? _host.Value;

    public int Length => _host.Length;

    /// <summary>Writes <paramref name="values"/> where the tensor is bound.</summary>
    public void Write(ReadOnlySpan<float> values)
    {
        _host.Write(values);
        _device?.Upload();
    }

    /// <summary>Reads the tensor from where it is bound.</summary>
    public void Read(Span<float> destination)
    {
        _device?.Download();
        _host.Read(destination);
    }

    public void Dispose()
    {
        _device?.Dispose(); // before the host buffer it may have page-locked
        _host.Dispose();
    }
}
