using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace RenderFarm.Diffusion.Tensors;

/// <summary>
/// A tensor a session binds where the models run: its pinned host buffer on the CPU, its <see cref="DeviceTensor"/>
/// twin on a GPU (zeros until first written, at a fixed address, as CUDA graphs need). <see cref="Write"/> and
/// <see cref="Read"/> move values in and out as float32 wherever it lives (and whatever its element type); a writer
/// that fills it in parts writes <see cref="Host"/> and then calls <see cref="Upload"/>.
/// </summary>
internal sealed class BoundTensor : IDisposable
{
    private readonly TensorBuffer _host;
    private readonly DeviceTensor? _device;

    /// <param name="deviceId">The CUDA device, or null for host memory.</param>
    /// <param name="shape">The shape.</param>
    /// <param name="pageLock">Whether the host twin is page-locked: for tensors written every step.</param>
    /// <param name="type">The element type (float32 unless given).</param>
    public BoundTensor(int? deviceId, long[] shape, bool pageLock = false, TensorElementType type = TensorElementType.Float)
    {
        _host = TensorBuffer.Create(type, shape);
        try
        {
            _device = deviceId is int device ? new DeviceTensor(_host, device, pageLock) : null;
            _device?.Upload(); // the host buffer's zeros: device memory comes uninitialised
        }
        catch
        {
            _device?.Dispose();
            _host.Dispose();
            throw;
        }
    }

    /// <summary>What a binding binds.</summary>
    public OrtValue Value => _device?.Value ?? _host.Value;

    public int Length => _host.Length;

    public long[] Shape => _host.Shape;

    /// <summary>The host buffer: on a GPU, what is written there reaches the device on <see cref="Upload"/>.</summary>
    public TensorBuffer Host => _host;

    /// <summary>Host buffer → device, where there is one.</summary>
    public void Upload() => _device?.Upload();

    /// <summary>Rows [<paramref name="skip"/>, …) as a tensor of their own where this one lives (<see cref="TensorBuffer.RowsOf"/>).</summary>
    public OrtValue Rows(int skip) => _device?.Rows(skip) ?? _host.Rows(skip);

    /// <summary>Writes <paramref name="values"/> where the tensor is bound.</summary>
    public void Write(ReadOnlySpan<float> values)
    {
        _host.Write(values);
        _device?.Upload();
    }

    /// <summary>Sets every value to <paramref name="value"/> where the tensor is bound.</summary>
    public void Fill(double value)
    {
        _host.Fill(value);
        _device?.Upload();
    }

    /// <summary>
    /// Writes <paramref name="rows"/> rows of <paramref name="perRow"/> values, each the first values of a
    /// <paramref name="stride"/>-long row of <paramref name="source"/>, where the tensor is bound.
    /// </summary>
    public void WriteRows(ReadOnlySpan<float> source, int rows, int perRow, int stride)
    {
        for (int r = 0; r < rows; r++) _host.Write(source.Slice(r * stride, perRow), r * perRow);
        _device?.Upload();
    }

    /// <summary>
    /// Copies <paramref name="rows"/> rows of <paramref name="source"/> (a tensor of the same element type and row size,
    /// bound to the same place), from its row <paramref name="sourceRow"/> to this one's row
    /// <paramref name="destinationRow"/>: device to device on a GPU, so nothing crosses to the host; done when it returns.
    /// </summary>
    public unsafe void CopyRows(BoundTensor source, int sourceRow, int destinationRow, int rows)
    {
        long rowBytes = _host.ByteLength / Shape[0];
        if (source._host.ElementType != _host.ElementType || source._host.ByteLength / source.Shape[0] != rowBytes || (source._device is null) != (_device is null))
        {
            throw new ArgumentException("Rows are copied between tensors of one element type and row size, bound to the same place.", nameof(source));
        }
        if (sourceRow < 0 || destinationRow < 0 || rows < 0 || sourceRow + rows > source.Shape[0] || destinationRow + rows > Shape[0])
        {
            throw new ArgumentOutOfRangeException(nameof(rows), $"Rows [{sourceRow}, {sourceRow + rows}) into [{destinationRow}, …) do not fit {source.Shape[0]} and {Shape[0]} rows.");
        }
        long bytes = rows * rowBytes;
        if (_device is { } device)
        {
            CudaRuntime.Copy(device.Address + (nint)(destinationRow * rowBytes), source._device!.Address + (nint)(sourceRow * rowBytes), bytes);
        }
        else
        {
            Buffer.MemoryCopy((byte*)source._host.Address + sourceRow * rowBytes, (byte*)_host.Address + destinationRow * rowBytes, bytes, bytes);
        }
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
