using Google.Protobuf;
using RenderFarm.Diffusion;
using RenderFarm.Diffusion.Imaging;
using RenderFarm.Farm.Tests.Infrastructure;
using RenderFarm.Protocol;
using RenderFarm.Imaging;
using RenderFarm.Shared;
using SkiaSharp;
using RenderFarm.FarmState;

namespace RenderFarm.Farm.Tests;

/// <summary>img2img and inpainting jobs through the farm: init images and masks sent with the batch, rendered by workers.</summary>
[Collection("farm")]
public sealed class InputImageTests(FarmFixture fixture)
{
    private FarmCluster Farm => fixture.Cluster;

    /// <summary>A 64×64 PNG: a diagonal gradient in the given colour.</summary>
    internal static byte[] Gradient(byte r, byte g, byte b)
    {
        var rgb = new byte[64 * 64 * 3];
        for (var y = 0; y < 64; y++)
            for (var x = 0; x < 64; x++)
            {
                var o = (y * 64 + x) * 3;
                var t = (x + y) / 126f;
                (rgb[o], rgb[o + 1], rgb[o + 2]) = ((byte)(r * t), (byte)(g * t), (byte)(b * t));
            }
        return PngEncoder.Encode(rgb, 64, 64);
    }

    /// <summary>A JPEG (Skia's encoder, quality 90) of <paramref name="width"/>×<paramref name="height"/> random pixels.</summary>
    internal static byte[] NoiseJpeg(int width, int height, int seed)
    {
        var random = new Random(seed);
        using var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        random.NextBytes(bitmap.GetPixelSpan());
        using var data = bitmap.Encode(SKEncodedImageFormat.Jpeg, 90);
        return data.ToArray();
    }

    /// <summary>White (repaint) on the left half, black (keep) on the right.</summary>
    internal static byte[] LeftHalfMask()
    {
        var rgb = new byte[64 * 64 * 3];
        for (var y = 0; y < 64; y++)
            for (var x = 0; x < 32; x++)
                rgb.AsSpan((y * 64 + x) * 3, 3).Fill(255);
        return PngEncoder.Encode(rgb, 64, 64);
    }

    internal static SubmitJobRequest Input(string name, byte[] bytes, bool more = false) =>
        new() { InputImage = new InputImage { Name = name, Data = ByteString.CopyFrom(bytes), More = more } };

    internal static SubmitJobRequest Prompt(string text, string? init = null, string? mask = null, float? strength = null)
    {
        var item = new PromptItem { Prompt = text };
        if (init is not null) item.InitImage = init;
        if (mask is not null) item.MaskImage = mask;
        if (strength is float s) item.Strength = s;
        return new SubmitJobRequest { Prompt = item };
    }

    private static JobHeader Header(float strength = 0) => new()
    {
        Params = new GenerationParams { Width = 64, Height = 64, Steps = 5, GuidanceScale = 7f, Strength = strength },
        Seeds = { 5 },
    };

    private static double MeanAbsoluteDifference(byte[] pngA, byte[] pngB)
    {
        var a = ImageDecoder.Decode(pngA, grey: false, long.MaxValue, nameof(pngA)).Pixels;
        var b = ImageDecoder.Decode(pngB, grey: false, long.MaxValue, nameof(pngB)).Pixels;
        return a.Zip(b, (x, y) => Math.Abs(x - y)).Average();
    }

    [Fact]
    public async Task EachPromptStartsFromItsOwnInitImageAndEachDistinctImageIsStoredOnceUntilTheJobCompletes()
    {
        // No worker until the inputs have been looked at.
        await using var farm = await FarmCluster.StartAsync(workers: 0);
        var red = Gradient(250, 30, 20);
        var blue = Gradient(10, 40, 240);
        var submitted = await farm.SubmitItemsAsync(Header(strength: 0.3f),
        [
            Input("red", red),
            Prompt("a castle on a hill", init: "red"),
            Input("blue", blue),
            Prompt("a castle on a hill", init: "blue"),
            Input("red again", red), // same bytes under another name: stored once
            Prompt("a castle on a hill", init: "red again"),
            Prompt("a castle on a hill"),
            Prompt("a castle on a hill", init: "red", strength: 0.9f),
        ]);

        Assert.Equal(2, await farm.Redis.HashLengthAsync(FarmKeys.JobInputs(submitted.JobId)));
        await farm.StartWorkerAsync("worker-1");

        var events = await farm.WatchToEndAsync(submitted.JobId, TimeSpan.FromMinutes(2));

        Assert.Equal(JobState.Completed, events[^1].JobFinished.State);
        Assert.False(await farm.Redis.KeyExistsAsync(FarmKeys.JobInputs(submitted.JobId))); // nothing left to retry
        var images = (await farm.Jobs.DownloadAllAsync(submitted.JobId)).OrderBy(i => i.Info.Index).Select(i => i.Png).ToList();
        Assert.Equal(5, images.Count);
        var parameters = images.Select(png => PngMetadata.Read(png).Text["parameters"]).ToList();
        Assert.All(new[] { 0, 1, 2 }, i => Assert.EndsWith(", Denoising strength: 0.3", parameters[i]));
        Assert.DoesNotContain("Denoising strength", parameters[3]);
        Assert.EndsWith(", Denoising strength: 0.9", parameters[4]);
        // Same prompt, seed and init image: the same picture (rows of one batch may differ in the last bits);
        // another init image or none: a different one.
        var same = MeanAbsoluteDifference(images[0], images[2]);
        Assert.True(same < 0.5, $"same init image differs by {same}");
        var otherInit = MeanAbsoluteDifference(images[0], images[1]);
        var noInit = MeanAbsoluteDifference(images[0], images[3]);
        Assert.True(otherInit > 5, $"the init image made no difference: {otherInit} vs {same}");
        Assert.True(noInit > 5, $"img2img looks like txt2img: {noInit} vs {same}");
    }

    [Fact]
    public async Task AnInpaintingJobRendersWithItsMaskAndTheDefaultStrengthOfOne()
    {
        var submitted = await Farm.SubmitItemsAsync(Header(),
        [
            Input("photo", Gradient(200, 180, 40)),
            Input("mask", LeftHalfMask()),
            Prompt("a red door", init: "photo", mask: "mask"),
            Prompt("a red door", init: "photo"),
        ]);
        Assert.Equal(2u, submitted.ShardCount); // one UNet batch runs one mode

        var events = await Farm.WatchToEndAsync(submitted.JobId, TimeSpan.FromMinutes(2));

        Assert.Equal(JobState.Completed, events[^1].JobFinished.State);
        var images = (await Farm.Jobs.DownloadAllAsync(submitted.JobId)).OrderBy(i => i.Info.Index).Select(i => i.Png).ToList();
        Assert.EndsWith(", Denoising strength: 1", PngMetadata.Read(images[0]).Text["parameters"]);
        Assert.EndsWith(", Denoising strength: 0.8", PngMetadata.Read(images[1]).Text["parameters"]);
        Assert.True(MeanAbsoluteDifference(images[0], images[1]) > 1, "the mask made no difference");
    }
}
