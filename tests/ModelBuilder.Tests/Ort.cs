using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace RenderFarm.ModelBuilder.Tests;

/// <summary>Small helpers to feed ONNX Runtime float32/float16/int inputs and read outputs back as float32.</summary>
internal static class Ort
{
    public static InferenceSession Open(string modelPath)
    {
        var options = new SessionOptions { IntraOpNumThreads = 2, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        return new InferenceSession(modelPath, options);
    }

    /// <summary>A named input of the element type the model declares, from float values.</summary>
    public static NamedOnnxValue Input(InferenceSession session, string name, int[] shape, float[] values)
    {
        var meta = session.InputMetadata[name];
        if (meta.ElementType == typeof(float))
            return NamedOnnxValue.CreateFromTensor(name, new DenseTensor<float>(values, shape));
        if (meta.ElementType == typeof(Float16))
            return NamedOnnxValue.CreateFromTensor(name, new DenseTensor<Float16>(values.Select(v => (Float16)v).ToArray(), shape));
        if (meta.ElementType == typeof(long))
            return NamedOnnxValue.CreateFromTensor(name, new DenseTensor<long>(values.Select(v => (long)v).ToArray(), shape));
        if (meta.ElementType == typeof(int))
            return NamedOnnxValue.CreateFromTensor(name, new DenseTensor<int>(values.Select(v => (int)v).ToArray(), shape));
        throw new NotSupportedException($"{name}: {meta.ElementType}");
    }

    public static (float[] Values, int[] Shape) ToFloat(DisposableNamedOnnxValue value)
    {
        switch (value.Value)
        {
            case DenseTensor<float> f: return (f.ToArray(), f.Dimensions.ToArray());
            case DenseTensor<Float16> h: return (h.ToArray().Select(x => (float)x).ToArray(), h.Dimensions.ToArray());
            default: throw new NotSupportedException(value.Value.GetType().ToString());
        }
    }

    public static Dictionary<string, (float[] Values, int[] Shape)> Run(InferenceSession session, params NamedOnnxValue[] inputs)
    {
        using var results = session.Run(inputs);
        return results.ToDictionary(r => r.Name, ToFloat);
    }

    public static float[] Random(int count, ulong seed, float scale = 1f)
    {
        var rng = new Graph.SplitMix64(seed);
        return Enumerable.Range(0, count).Select(_ => (float)((rng.NextDouble() * 2 - 1) * scale)).ToArray();
    }
}
