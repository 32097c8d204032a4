using System.Collections.Concurrent;
using RenderFarm.ModelBuilder;

namespace RenderFarm.Diffusion.Tests;

/// <summary>Every ModelBuilder preset but sd15, written once per test run and loaded lazily; shared across test classes.</summary>
public sealed class PresetModels : IDisposable
{
    private readonly ConcurrentDictionary<string, Lazy<(string Directory, StableDiffusionPipeline Pipeline)>> _models = new();

    public static IEnumerable<string> Small => ModelPresets.SmallNames;

    public StableDiffusionPipeline Pipeline(string preset) => Get(preset).Pipeline;

    public string Directory(string preset) => Get(preset).Directory;

    private (string Directory, StableDiffusionPipeline Pipeline) Get(string preset) =>
        _models.GetOrAdd(preset, p => new(() =>
        {
            var directory = System.IO.Directory.CreateTempSubdirectory("renderfarm-" + p).FullName;
            System.IO.Directory.Delete(directory);
            ModelPresets.Write(p, directory);
            return (directory, StableDiffusionPipeline.Load(directory));
        })).Value;

    public void Dispose()
    {
        foreach (var model in _models.Values.Where(m => m.IsValueCreated).Select(m => m.Value))
        {
            model.Pipeline.Dispose();
            try { System.IO.Directory.Delete(model.Directory, recursive: true); } catch (IOException) { }
        }
    }
}

/// <summary>Small test images as PNG/JPEG bytes.</summary>
internal static class TestImages
{
    /// <summary>A colourful gradient, <paramref name="width"/>×<paramref name="height"/>.</summary>
    public static byte[] Gradient(int width, int height, int shift = 0) =>
        Imaging.PngEncoder.Encode(Pixels(width, height, (x, y) => [(byte)(x * 255 / width + shift), (byte)(y * 255 / height), (byte)((x + y + shift) % 256)]), width, height);

    /// <summary>A mask: white (repaint) in the left half when <paramref name="leftHalf"/>, else all <paramref name="value"/>.</summary>
    public static byte[] Mask(int width, int height, byte value, bool leftHalf = false) =>
        Imaging.PngEncoder.Encode(Pixels(width, height, (x, _) => leftHalf && x >= width / 2 ? [0, 0, 0] : [value, value, value]), width, height);

    /// <summary>A JPEG (Skia's encoder, quality 90) of a two-way gradient.</summary>
    public static byte[] Jpeg(int width, int height)
    {
        using var bitmap = new SkiaSharp.SKBitmap(width, height);
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                bitmap.SetPixel(x, y, new SkiaSharp.SKColor((byte)(x * 4), (byte)(y * 4), 128));
        using var data = bitmap.Encode(SkiaSharp.SKEncodedImageFormat.Jpeg, 90);
        return data.ToArray();
    }

    private static byte[] Pixels(int width, int height, Func<int, int, byte[]> pixel)
    {
        var rgb = new byte[width * height * 3];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                pixel(x, y).CopyTo(rgb, (y * width + x) * 3);
        return rgb;
    }
}
