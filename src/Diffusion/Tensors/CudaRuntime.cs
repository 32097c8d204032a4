using System.Runtime.InteropServices;

namespace RenderFarm.Diffusion.Tensors;

/// <summary>
/// The few CUDA runtime calls the pipeline makes itself: allocating, freeing and copying its fixed device buffers, and
/// page-locking their host twins. ONNX Runtime's CUDA provider already needs this library (libcudart.so.13 for the served 1.32 package), so
/// it is loaded from wherever the provider found it; on a CPU worker it is never loaded.
/// </summary>
internal static unsafe class CudaRuntime
{
    private static readonly string[] LibraryNames = ["libcudart.so.13", "libcudart.so", "cudart64_13.dll"];
    private const int MemcpyDefault = 4; // cudaMemcpyDefault: direction from the (unified) addresses

    private static readonly Lazy<Api> Functions = new(Load);

    private sealed class Api(IntPtr library)
    {
        public readonly delegate* unmanaged<int, int> SetDevice = (delegate* unmanaged<int, int>)Export(library, "cudaSetDevice");
        public readonly delegate* unmanaged<IntPtr*, nuint, int> Malloc = (delegate* unmanaged<IntPtr*, nuint, int>)Export(library, "cudaMalloc");
        public readonly delegate* unmanaged<IntPtr, int> Free = (delegate* unmanaged<IntPtr, int>)Export(library, "cudaFree");
        public readonly delegate* unmanaged<IntPtr, IntPtr, nuint, int, int> Memcpy = (delegate* unmanaged<IntPtr, IntPtr, nuint, int, int>)Export(library, "cudaMemcpy");
        public readonly delegate* unmanaged<int, IntPtr> GetErrorString = (delegate* unmanaged<int, IntPtr>)Export(library, "cudaGetErrorString");
        public readonly delegate* unmanaged<IntPtr, nuint, uint, int> HostRegister = (delegate* unmanaged<IntPtr, nuint, uint, int>)Export(library, "cudaHostRegister");
        public readonly delegate* unmanaged<IntPtr, int> HostUnregister = (delegate* unmanaged<IntPtr, int>)Export(library, "cudaHostUnregister");
        public readonly delegate* unmanaged<int> GetLastError = (delegate* unmanaged<int>)Export(library, "cudaGetLastError");
        public readonly delegate* unmanaged<IntPtr, int, nuint, int> Memset = (delegate* unmanaged<IntPtr, int, nuint, int>)Export(library, "cudaMemset");
        public readonly delegate* unmanaged<int> DeviceSynchronize = (delegate* unmanaged<int>)Export(library, "cudaDeviceSynchronize");
        public readonly delegate* unmanaged<IntPtr, int> StreamSynchronize = (delegate* unmanaged<IntPtr, int>)Export(library, "cudaStreamSynchronize");

        private static IntPtr Export(IntPtr library, string name) => NativeLibrary.GetExport(library, name);
    }

    private static Api Load()
    {
        foreach (var name in LibraryNames)
        {
            if (NativeLibrary.TryLoad(name, out var library))
            {
                return new Api(library);
            }
        }
        throw new DllNotFoundException(
            $"The CUDA runtime ({string.Join(" or ", LibraryNames)}) could not be loaded; the CUDA provider needs it too (LD_LIBRARY_PATH).");
    }

    /// <summary>Allocates <paramref name="bytes"/> on GPU <paramref name="device"/>.</summary>
    public static IntPtr Allocate(int device, long bytes)
    {
        var api = Functions.Value;
        Check(api.SetDevice(device), "cudaSetDevice");
        IntPtr pointer;
        Check(api.Malloc(&pointer, (nuint)Math.Max(bytes, 1)), $"cudaMalloc of {bytes} bytes");
        return pointer;
    }

    public static void Free(IntPtr pointer)
    {
        if (pointer != IntPtr.Zero && Functions.Value.Free(pointer) != 0)
        {
            // Nothing to do about it on the way out, but the error must not stay pending for ONNX Runtime to find.
            Functions.Value.GetLastError();
        }
    }

    /// <summary>
    /// Page-locks <paramref name="bytes"/> of (pinned) host memory at <paramref name="pointer"/>, so copies to and from it
    /// go by DMA straight from it instead of through a staging buffer: about twice as fast. False when CUDA refuses
    /// (the copies then work as before); the refusal is cleared, since ONNX Runtime checks cudaGetLastError after its
    /// own calls and would take it for its own.
    /// </summary>
    public static bool TryRegisterHost(IntPtr pointer, long bytes)
    {
        var api = Functions.Value;
        if (api.HostRegister(pointer, (nuint)bytes, 0) == 0)
        {
            return true;
        }
        api.GetLastError();
        return false;
    }

    /// <summary>Undoes <see cref="TryRegisterHost"/> (before the memory is unpinned or freed).</summary>
    public static void UnregisterHost(IntPtr pointer)
    {
        var api = Functions.Value;
        if (api.HostUnregister(pointer) != 0)
        {
            api.GetLastError();
        }
    }

    /// <summary>
    /// Sets <paramref name="bytes"/> of device memory to zero, done when it returns: cudaMemset alone may still be running,
    /// and ONNX Runtime's kernels run on their own stream, not ordered after it.
    /// </summary>
    public static void Zero(IntPtr pointer, long bytes)
    {
        var api = Functions.Value;
        Check(api.Memset(pointer, 0, (nuint)bytes), "cudaMemset");
        Check(api.DeviceSynchronize(), "cudaDeviceSynchronize");
    }

    /// <summary>
    /// Copies <paramref name="bytes"/> between host and device, or between device buffers, done when it returns.
    /// cudaMemcpy alone does not wait for a copy from pageable host memory to land, nor for one between device buffers,
    /// and ONNX Runtime's kernels run on their own (non-blocking) stream, not ordered after it: the copy's stream, the
    /// legacy default one, is waited for (only the copy, not other sessions' kernels).
    /// </summary>
    public static void Copy(IntPtr destination, IntPtr source, long bytes)
    {
        var api = Functions.Value;
        Check(api.Memcpy(destination, source, (nuint)bytes, MemcpyDefault), "cudaMemcpy");
        Check(api.StreamSynchronize(IntPtr.Zero), "cudaStreamSynchronize");
    }

    private const int ErrorMemoryAllocation = 2; // cudaErrorMemoryAllocation

    /// <summary>
    /// A failed call is the device's fault, or out of memory (a smaller batch may fit): the farm treats them apart. The
    /// failure is cleared from the thread's last error first: ONNX Runtime's CUDA kernels check cudaGetLastError after
    /// each launch on this same thread (the model thread), so a pending cudaMalloc failure would fail the next model
    /// run, the smaller batch's retry included, even with memory to spare.
    /// </summary>
    private static void Check(int status, string what)
    {
        if (status != 0)
        {
            Functions.Value.GetLastError();
            var text = Marshal.PtrToStringAnsi(Functions.Value.GetErrorString(status)) ?? "unknown error";
            throw new GenerationFailedException(status == ErrorMemoryAllocation ? GenerationFailureKind.OutOfMemory : GenerationFailureKind.Device,
                $"{what} failed: CUDA error {status} ({text}).");
        }
    }
}
