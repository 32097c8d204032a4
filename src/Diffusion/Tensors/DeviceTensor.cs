using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace RenderFarm.Diffusion.Tensors;

/// <summary>
/// A tensor in CUDA memory, allocated once at a fixed address (what CUDA graphs need) and exposed as an
/// <see cref="OrtValue"/>, so a session reads its inputs and writes its outputs there without ONNX Runtime copying or
/// allocating anything per run. Most are the device copy of a host <see cref="TensorBuffer"/> of the same type and
/// shape: <see cref="Upload"/> and <see cref="Download"/> move the values (synchronously) between the two, and a host
/// buffer copied every step is page-locked while this lives (where CUDA allows), so the copies go by DMA without a
/// staging copy. <see cref="Zeros"/> makes one that never leaves the device.
/// </summary>
internal sealed class DeviceTensor : IDisposable
{
    private readonly TensorBuffer? _host;
    private readonly IntPtr _device;
    private readonly long _bytes;
    private readonly TensorElementType _type;
    private readonly long[] _shape;
    private readonly int _deviceId;
    private readonly bool _registered;
    private bool _disposed;

    /// <summary>Host buffers from this size up are page-locked when asked.</summary>
    internal const long RegisterFrom = 64 * 1024;

    /// <param name="host">The host twin (pinned; it must outlive this).</param>
    /// <param name="deviceId">The CUDA device.</param>
    /// <param name="pageLock">
    /// Whether to page-lock the host twin: for buffers copied every step. Small ones are not worth a registration (their
    /// copies cost their latency) and may share a page with another buffer, which CUDA refuses.
    /// </param>
    public DeviceTensor(TensorBuffer host, int deviceId, bool pageLock = false)
        : this(host, host.ElementType, host.Shape, host.ByteLength, deviceId)
    {
        _registered = pageLock && _bytes >= RegisterFrom && CudaRuntime.TryRegisterHost(host.Address, _bytes);
    }

    private DeviceTensor(TensorBuffer? host, TensorElementType type, long[] shape, long bytes, int deviceId)
    {
        _host = host;
        _bytes = bytes;
        _type = type;
        _shape = shape;
        _deviceId = deviceId;
        _device = CudaRuntime.Allocate(deviceId, _bytes);
        try
        {
            using var memory = Memory(deviceId);
            Value = OrtValue.CreateTensorValueWithData(memory, type, shape, _device, _bytes);
        }
        catch
        {
            CudaRuntime.Free(_device);
            throw;
        }
    }

    /// <summary>A device-only tensor of zeros (a session's output that stays on the device).</summary>
    public static DeviceTensor Zeros(TensorElementType type, long[] shape, int deviceId)
    {
        long bytes = shape.Aggregate(1L, (a, d) => a * d) * TensorBuffer.ElementSize(type);
        var tensor = new DeviceTensor(null, type, shape, bytes, deviceId);
        try
        {
            CudaRuntime.Zero(tensor._device, bytes);
            return tensor;
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }

    public OrtValue Value { get; }

    /// <summary>The device buffer's address.</summary>
    public IntPtr Address => _device;

    private static OrtMemoryInfo Memory(int deviceId) => new("Cuda", OrtAllocatorType.DeviceAllocator, deviceId, OrtMemType.Default);

    /// <summary>Rows [<paramref name="skip"/>, …) as a tensor of their own on the device (<see cref="TensorBuffer.RowsOf"/>).</summary>
    public OrtValue Rows(int skip)
    {
        using var memory = Memory(_deviceId);
        return TensorBuffer.RowsOf(memory, _type, _shape, _device, _bytes, skip);
    }

    /// <summary>Host buffer → device (the whole tensor).</summary>
    public void Upload() => CudaRuntime.Copy(_device, Host.Address, _bytes);

    /// <summary>Device → host buffer (the whole tensor).</summary>
    public void Download() => CudaRuntime.Copy(Host.Address, _device, _bytes);

    private TensorBuffer Host => _host ?? throw new InvalidOperationException("This tensor lives on the device only.");

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
            CudaRuntime.UnregisterHost(_host!.Address);
        }
        CudaRuntime.Free(_device);
    }
}
