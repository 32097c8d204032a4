using RenderFarm.GenerationRules;
using RenderFarm.Protocol;
using RenderFarm.Shared;

namespace RenderFarm.Coordinator.Jobs;

/// <summary>What the online workers can take, as <see cref="ShardSizing"/> read it.</summary>
public sealed class FleetCapacity(IReadOnlyList<WorkerInfo> online, int cap)
{
    private readonly Dictionary<(string Model, ulong Pixels), int> _sizes = [];

    private IEnumerable<WorkerInfo> Serving(string model) => online.Where(w => w.Models.Contains(model));

    private static ModelLimit? LimitOf(WorkerInfo worker, string model) => worker.Limits.FirstOrDefault(l => l.Model == model);

    /// <summary>Pixels per image of the largest pass (a hires fix's second pass): what a worker's memory limits are learnt in.</summary>
    private static ulong Pixels(GenerationParams p)
    {
        var (width, height) = UpscaleMessages.RenderSize(p);
        return (ulong)width * height;
    }

    /// <summary>Images per shard for <paramref name="p"/>'s model and size.</summary>
    public int ShardSize(GenerationParams p)
    {
        var key = (p.Model, Pixels(p));
        if (_sizes.TryGetValue(key, out var size)) return size;
        var batches = Serving(p.Model).Select(w =>
        {
            var batch = w.MaxBatch > 0 ? (ulong)w.MaxBatch : (ulong)cap;
            if (LimitOf(w, p.Model) is { MaxBatchPixels: > 0 } limit) batch = Math.Min(batch, Math.Max(1, limit.MaxBatchPixels / key.Item2));
            return (int)Math.Min(batch, int.MaxValue);
        }).ToList();
        return _sizes[key] = batches.Count == 0 ? cap : Math.Min(cap, batches.Min());
    }

    /// <summary>
    /// Why the online workers of <paramref name="model"/> cannot render <paramref name="loras"/>: a name none of them
    /// offers (Farm:Loras), or a LoRA none of them offers for this model (made for another model family); null when
    /// each is offered for it by some worker, or no worker of the model is online (the job waits for one).
    /// </summary>
    public string? WhyLorasUnavailable(string model, LoraSet loras)
    {
        if (loras.IsEmpty) return null;
        var serving = Serving(model).ToList();
        if (serving.Count == 0) return null;
        var offered = serving.SelectMany(w => w.Loras).ToList();
        foreach (var name in loras.Items.Select(l => l.Name))
        {
            var files = offered.Where(l => l.Name == name).ToList();
            if (files.Count == 0)
            {
                var known = offered.Select(l => l.Name).Distinct().Order(StringComparer.Ordinal).ToList();
                return $"LoRA '{BatchValidator.Truncate(name)}' is not offered by any online worker of model '{model}' " +
                       (known.Count == 0 ? "(they offer none)" : $"(they offer: {string.Join(", ", known.Take(20))}{(known.Count > 20 ? ", …" : "")})");
            }
            if (!files.Any(l => l.Models.Contains(model)))
                return $"LoRA '{BatchValidator.Truncate(name)}' ({FamilyName(files[0].Family)}) does not fit model '{model}', which is of another family";
        }
        return null;
    }

    private readonly Dictionary<(string Model, string Name), (uint Scale, string? Problem)> _upscalers = [];

    /// <summary>
    /// The scale of the upscaler <paramref name="name"/> as the online workers of <paramref name="model"/> offer it
    /// (as any online worker offers it while none of the model's is online), or why it cannot be used: none of the
    /// model's workers offers it, or no online worker does (its scale, and so the images' size, is unknown).
    /// </summary>
    public (uint Scale, string? Problem) Upscaler(string model, string name)
    {
        if (_upscalers.TryGetValue((model, name), out var known)) return known;
        var serving = Serving(model).ToList();
        var pool = serving.Count > 0 ? serving : online;
        // Workers of one farm share an upscaler folder; should two files of one name differ, the most common scale wins
        // (a worker whose file has another scale resizes to it).
        var scale = pool.SelectMany(w => w.Upscalers).Where(u => u.Name == name && u.Scale > 0)
            .GroupBy(u => u.Scale).OrderByDescending(g => g.Count()).ThenBy(g => g.Key).Select(g => g.Key).FirstOrDefault();
        string? problem = null;
        if (scale == 0)
        {
            var offered = pool.SelectMany(w => w.Upscalers).Select(u => u.Name).Distinct().Order(StringComparer.Ordinal).ToList();
            var listing = offered.Count == 0 ? "they offer none" : $"they offer: {string.Join(", ", offered.Take(20))}{(offered.Count > 20 ? ", …" : "")}";
            problem = serving.Count > 0
                ? $"upscaler '{BatchValidator.Truncate(name)}' is not offered by any online worker of model '{model}' ({listing})"
                : $"no online worker offers upscaler '{BatchValidator.Truncate(name)}', so its scale (and the images' size) is not known; " +
                  $"start a worker with it in Farm:Upscalers ({(online.Count == 0 ? "no worker is online" : listing)})";
        }
        return _upscalers[(model, name)] = (scale, problem);
    }

    /// <summary>
    /// Why the hires upscaler <paramref name="name"/> cannot be used for <paramref name="model"/>: none of its online
    /// workers offers it (null when one does, for keywords, or while none of them is online: the job waits).
    /// </summary>
    public string? WhyHiresUpscalerUnavailable(string model, string name)
    {
        if (UpscaleRule.IsKeyword(name) || !Serving(model).Any()) return null;
        return Upscaler(model, name).Problem;
    }

    /// <summary>
    /// Why the online workers of <paramref name="model"/> cannot run ControlNets <paramref name="names"/>: a name none
    /// of them offers (Farm:ControlNets), or one offered only for other models (another family, or a copy of the model
    /// that takes no ControlNets);
    /// null when each is offered for it, or no worker of the model is online (the job waits for one).
    /// </summary>
    public string? WhyControlNetsUnavailable(string model, IEnumerable<string> names)
    {
        var serving = Serving(model).ToList();
        if (serving.Count == 0) return null;
        var offered = serving.SelectMany(w => w.ControlNets).ToList();
        foreach (var name in names.Distinct(StringComparer.Ordinal))
        {
            var units = offered.Where(c => c.Name == name).ToList();
            if (units.Count == 0)
            {
                var known = offered.Select(c => c.Name).Distinct().Order(StringComparer.Ordinal).ToList();
                return $"ControlNet '{BatchValidator.Truncate(name)}' is not offered by any online worker of model '{model}' " +
                       (known.Count == 0 ? "(they offer none)" : $"(they offer: {string.Join(", ", known.Take(20))}{(known.Count > 20 ? ", …" : "")})");
            }
            if (!units.Any(c => c.Models.Contains(model)))
                return $"ControlNet '{BatchValidator.Truncate(name)}' is offered, but not for model '{model}' on the workers that offer it: it is made " +
                       "for another model family (SD 1.x/2.x or SDXL), or the model takes no ControlNets (its unet needs " +
                       "down_block_N_additional_residual inputs, or the model directory controlnet/model.onnx)";
        }
        return null;
    }

    /// <summary>
    /// Why <paramref name="p"/>'s refiner cannot continue its model's latents: no online worker holds it, or the two
    /// work in different latent channels (as the workers described the models), or the model is itself a refiner;
    /// null when it can, or has no refiner.
    /// </summary>
    public string? WhyRefinerUnusable(GenerationParams p)
    {
        if (p.Refiner.Length == 0) return null;
        if (!Serving(p.Refiner).Any())
        {
            var held = online.SelectMany(w => w.Models).Distinct().Order(StringComparer.Ordinal).ToList();
            return $"refiner '{BatchValidator.Truncate(p.Refiner)}' is not held by any online worker " +
                   (held.Count == 0 ? "(no worker is online)" : $"(online models: {string.Join(", ", held.Take(20))}{(held.Count > 20 ? ", …" : "")})");
        }
        var shapes = online.SelectMany(w => w.ModelShapes).GroupBy(s => s.Model).ToDictionary(g => g.Key, g => g.First());
        if (shapes.TryGetValue(p.Model, out var model) && model.Refiner)
            return $"model '{p.Model}' is an SDXL refiner; a refiner continues a base model's render (give the base as the model)";
        if (shapes.TryGetValue(p.Refiner, out var refiner) && model is not null && refiner.LatentChannels != model.LatentChannels)
            return $"refiner '{p.Refiner}' does not fit model '{p.Model}': it works in {refiner.LatentChannels} latent channels, the model in " +
                   $"{model.LatentChannels} (a refiner must be an SDXL refiner or a model of the same latent channels)";
        return null;
    }

    private static string FamilyName(string family) => family switch
    {
        "sdxl" => "an SDXL LoRA",
        "sd" => "an SD 1.x/2.x LoRA",
        _ => "a LoRA",
    };

    /// <summary>
    /// Why no online worker of the model can render <paramref name="p"/>'s size — each has run out of memory on one
    /// image that large or smaller — or null when one might (or none is online: the job waits for one).
    /// </summary>
    public string? WhyUnrenderable(GenerationParams p)
    {
        var serving = Serving(p.Model).ToList();
        var pixels = Pixels(p);
        if (serving.Count == 0 || serving.Any(w => LimitOf(w, p.Model) is not { OomImagePixels: > 0 } limit || pixels < limit.OomImagePixels))
            return null;
        var largestFit = serving.Max(w => LimitOf(w, p.Model)!.MaxBatchPixels);
        var firstOom = serving.Max(w => LimitOf(w, p.Model)!.OomImagePixels);
        var (width, height) = UpscaleMessages.RenderSize(p);
        return $"{width}x{height}{(p.Hires is null ? "" : " (the hires pass)")} ({pixels} pixels) is more than any online worker of model '{p.Model}' can render: " +
               $"{(serving.Count == 1 ? $"worker {serving[0].WorkerId} runs" : $"all {serving.Count} run")} out of memory on one image of " +
               $"{firstOom} pixels{(serving.Count == 1 ? "" : " or fewer")}" +
               (largestFit > 0 ? $", and the most rendered at once is {largestFit} pixels (images x width x height)" : "");
    }
}
