using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using RenderFarm.Diffusion.Imaging;
using RenderFarm.Diffusion.Lora;
using RenderFarm.GenerationRules;

namespace RenderFarm.Diffusion;

/// <summary>
/// A request rendered up to its decoded images ([images, 3, H, W] in [−1, 1]), holding no model
/// (<see cref="StableDiffusionPipeline.RenderAsync"/>): <see cref="EncodePngs"/> turns them into the PNGs
/// <see cref="StableDiffusionPipeline.GenerateAsync"/> returns, with their generation parameters. Encoding is plain
/// CPU work, so it can run while the pipeline renders the next request.
/// </summary>
public sealed class DecodedImages : IDisposable
{
    private readonly GenerationRequest _request;
    private readonly string _sampler;
    private readonly LoraSet[] _loras;
    private readonly Func<string, string> _shortHash;
    private readonly float? _strength;
    private readonly Action<long, int> _encoded;
    private readonly (int Width, int Height) _size;
    private float[]? _pixels; // rented from ArrayPool<float>.Shared; returned once encoded or disposed

    internal DecodedImages(GenerationRequest request, string sampler, LoraSet[] loras, float[] pixels, Func<string, string> shortHash,
        float? strength, Action<long, int> encoded, (int Width, int Height)? size = null)
    {
        _size = size ?? (request.Width, request.Height);
        _request = request;
        _sampler = sampler;
        _loras = loras;
        _pixels = pixels;
        _shortHash = shortHash;
        _strength = strength;
        _encoded = encoded;
    }

    /// <summary>How many images the request rendered.</summary>
    public int Count => _request.Images.Count;

    /// <summary>Encodes every image as a PNG with its parameters (in parallel for a batch), once; then releases the pixels.</summary>
    public IReadOnlyList<GeneratedImage> EncodePngs()
    {
        // Taken, not read: a Dispose meanwhile must not hand the array back to the pool while it is being encoded.
        var pixels = Interlocked.Exchange(ref _pixels, null)
            ?? throw new ObjectDisposedException(nameof(DecodedImages), "the images were encoded or released already");
        try
        {
            long start = Stopwatch.GetTimestamp();
            var images = Encode(pixels);
            _encoded(Stopwatch.GetTimestamp() - start, images.Length);
            return images;
        }
        finally
        {
            ArrayPool<float>.Shared.Return(pixels);
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _pixels, null) is { } pixels) ArrayPool<float>.Shared.Return(pixels);
    }

    /// <summary>
    /// The LoRAs image <paramref name="image"/>'s parameters record: those it rendered with, or a refiner's (a request
    /// with <see cref="GenerationRequest.BaseModel"/>) the base's, those with a known hash; with the request-level ones
    /// (written as tags) and where their short hashes come from.
    /// </summary>
    private (LoraSet Loras, LoraSet Asked, Func<string, string> ShortHash) RecordedLoras(int image)
    {
        var request = _request;
        if (request.BaseModel is null) return (_loras[image], request.Loras ?? LoraSet.Empty, _shortHash);
        var hashes = request.BaseLoraHashes;
        var rendered = LoraPrompt.ForImage(request.BaseLoras, request.Images[image].Prompt, request.Images[image].NegativePrompt);
        return (LoraSet.Of(rendered.Items.Where(l => hashes.ContainsKey(l.Name))), request.BaseLoras, name => hashes[name]);
    }

    private GeneratedImage[] Encode(float[] pixels)
    {
        var request = _request;
        // The pixels are the final size (after hires fix and upscaling); the parameters' Size is the first pass's, as A1111 writes it.
        int width = _size.Width, height = _size.Height, perPixels = 3 * height * width;
        var extra = new List<KeyValuePair<string, string>>();
        if ((_strength ?? request.Hires?.Denoise) is { } strength)
        {
            extra.Add(new("Denoising strength", strength.ToString(CultureInfo.InvariantCulture)));
        }
        if (request.ClipSkip != 1)
        {
            extra.Add(new("Clip skip", request.ClipSkip.ToString(CultureInfo.InvariantCulture)));
        }
        extra.AddRange(HiresFix.Parameters(request.Hires));
        var postprocessing = UpscaleRequest.Parameters(request.Upscale, request.Hires is { } hires ? hires.Width(request.Width) : request.Width, width);
        extra.AddRange(ControlNets.ControlNetUnit.ParametersOf([.. request.ControlNets ?? [], .. request.BaseControlNets ?? []]));
        var model = request.ModelName;
        if (request is { DenoisingStart: float switchAt, BaseModel: { } baseModel })
        {
            extra.AddRange(RefinerRule.Parameters(request.ModelName, switchAt));
            model = baseModel;
        }
        var results = new GeneratedImage[request.Images.Count];
        void EncodeImage(int b)
        {
            var rgb = ArrayPool<byte>.Shared.Rent(perPixels);
            try
            {
                var imageRgb = rgb.AsSpan(0, perPixels);
                ImageTensor.ToRgb(pixels.AsSpan(b * perPixels, perPixels), width, height, imageRgb);
                var image = request.Images[b];
                var (prompt, imageExtra) = (image.Prompt, (IEnumerable<KeyValuePair<string, string>>)extra);
                var (loras, asked, shortHash) = RecordedLoras(b);
                if (LoraHashes.Format(loras, shortHash) is { } hashes)
                {
                    // The request's own LoRAs are written as the tags A1111 would need to render the image again.
                    var tags = string.Concat(asked.Items.Where(l => !LoraPrompt.Parse(image.Prompt).Loras.Items.Any(p => p.Name == l.Name)).Select(l => l.ToString()));
                    prompt = tags.Length == 0 ? prompt : prompt.Length == 0 ? tags : prompt + " " + tags;
                    imageExtra = extra.Append(new(LoraHashes.Keyword, hashes));
                }
                var parameters = GenerationParameters.Format(prompt, image.NegativePrompt, request.Steps, _sampler,
                    request.GuidanceScale, image.Seed, request.Width, request.Height, model, imageExtra);
                KeyValuePair<string, string>[] text = postprocessing is null
                    ? [new(GenerationParameters.Keyword, parameters)]
                    : [new(GenerationParameters.Keyword, parameters), new(UpscaleRequest.Keyword, postprocessing)];
                // Our own PNG encoder on purpose, not Skia's (the farm's imaging library) nor stb's: this is the hot path (one
                // encode per image, overlapping the next batch's model runs), and at 512² it measured ~3× faster than
                // Skia's libpng and ~8× faster than StbImageWriteSharp (bench/pipeline.md, "PNG encoder").
                results[b] = new GeneratedImage(image, PngEncoder.Encode(imageRgb, width, height, text));
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(rgb);
            }
        }
        // The images of a batch encode in parallel: a 512² PNG is ~14 ms of deflate.
        if (results.Length == 1)
        {
            EncodeImage(0);
        }
        else
        {
            Parallel.For(0, results.Length, EncodeImage);
        }
        return results;
    }
}
