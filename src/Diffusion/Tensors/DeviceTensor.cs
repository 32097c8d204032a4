using Microsoft.ML.OnnxRuntime;

namespace RenderFarm.Diffusion.Tensors;

/// <summary>
/// A CUDA device copy of a host <see cref="TensorBuffer"/>: same element type and shape, allocated once at a fixed
/// address (what CUDA graphs need) and exposed as an <see cref="OrtValue"/> in CUDA memory, so a session reads its
/// inputs and writes its outputs there without ONNX Runtime copying or allocating anything per run.
/// <see cref="Upload"/> and <see cref="Download"/> move the values (synchronously) to and from the host buffer, which is
/// page-locked while this lives (where CUDA allows) so they go by DMA without a staging copy.
/// </summary>
internal sealed class DeviceTensor : IDisposable
{
    private readonly TensorBuffer _host;
    private readonly IntPtr _device;
    private readonly long _bytes;
    private readonly bool _registered;

    /// <summary>Host buffers from this size up are page-locked.</summary>
    internal const long RegisterFrom = 64 * 1024;
    private bool _disposed;

    public DeviceTensor(TensorBuffer host, int deviceId)
    {
        _host = host;
        _bytes = host.ByteLength;
        _device = CudaRuntime.Allocate(deviceId, _bytes);
        try
        {
            using var memory = new OrtMemoryInfo("Cuda", OrtAllocatorType.DeviceAllocator, deviceId, OrtMemType.Default);
            Value = OrtValue.CreateTensorValueWithData(memory, host.ElementType, host.Shape, _device, _bytes);
        }
        catch
        {
            CudaRuntime.Free(_device);
            throw;
        }
        // The host buffer is pinned for as long as it lives, and it outlives this. Small ones are not worth a
        // registration (their copies cost their latency) and may share a page with another buffer, which CUDA refuses.
        _registered = _bytes >= RegisterFrom && CudaRuntime.TryRegisterHost(host.Address, _bytes);
    }

    public OrtValue Value { get; }

    /// <summary>Host buffer → device (the whole tensor).</summary>
    public void Upload() => CudaRuntime.Copy(_device, _host.Address, _bytes);

    /// <summary>Device → host buffer (the whole tensor).</summary>
    public void Download() => CudaRuntime.Copy(_host.Address, _device, _bytes);

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        Value.Dispose();
        if (_registered)
        {
            CudaRuntime.UnregisterHost(_host.Address);
        }
        CudaRuntime.Free(_device);
    }
}
