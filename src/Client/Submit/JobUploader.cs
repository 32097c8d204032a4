using Grpc.Core;
using RenderFarm.Client.Connection;
using RenderFarm.Client.Prompts;
using RenderFarm.Protocol;
using RenderFarm.Shared.Tracing;
using RenderFarm.Shared;
using RenderFarm.GenerationRules;

namespace RenderFarm.Client.Submit;

/// <summary>
/// The submission pass: one SubmitJob call streaming the header, then the prompt file read again (never held in
/// memory), each init image or mask just before the first prompt that names it. The coordinator answers with the job
/// id once every shard is queued.
/// </summary>
public static class JobUploader
{
    public static async Task<(SubmitJobResponse Response, int InputImagesSent)> UploadAsync(
        CoordinatorConnection coordinator, PromptSource source, JobHeader header, InputImageDefaults inputs, CancellationToken cancellationToken)
    {
        // The job's trace starts here; the gRPC call carries it to the coordinator (traceparent header).
        using var activity = FarmTracing.Client.StartActivity("farm submit"); // internal: the gRPC request under it is the client span
        using var reader = source.OpenReader();
        // Disposing the call without completing it cancels it: the coordinator keeps nothing of a broken batch.
        using var call = coordinator.Client.SubmitJob(coordinator.CallOptions(cancellationToken));
        var images = new InputImageStreamer(call.RequestStream);
        try
        {
            // Writes need no token of their own: the call carries the command's cancellation (CallOptions).
            await call.RequestStream.WriteAsync(new SubmitJobRequest { Header = header });
            await foreach (var entry in source.ReadAsync(reader, cancellationToken))
            {
                var item = ToPromptItem(entry, header.Params.Hires, source.DisplayName);

                // An image goes into the stream just before the first prompt that names it.
                if (inputs.For(entry, source.DisplayName) is { } startFrom)
                {
                    item.InitImage = await images.NameAsync(startFrom.InitImage!, cancellationToken);
                    if (startFrom.Mask is { } mask) item.MaskImage = await images.NameAsync(mask, cancellationToken);
                    if (startFrom.Strength is { } strength) item.Strength = strength;
                }

                foreach (var controlNet in inputs.ControlNetsFor(entry))
                {
                    var unit = new ControlNetUnit
                    {
                        Model = controlNet.Model,
                        Image = controlNet.Module == ControlNetSpec.Canny
                            ? await images.NameCannyAsync(controlNet.Image, cancellationToken)
                            : await images.NameAsync(controlNet.Image, cancellationToken),
                        Weight = controlNet.Weight,
                        Module = controlNet.Module,
                        GuidanceStart = controlNet.GuidanceStart,
                        GuessMode = controlNet.GuessMode,
                    };
                    if (controlNet.GuidanceEnd != 1) unit.GuidanceEnd = controlNet.GuidanceEnd; // unset: 1
                    item.ControlNets.Add(unit);
                }

                await call.RequestStream.WriteAsync(new SubmitJobRequest { Prompt = item });
            }

            await call.RequestStream.CompleteAsync();
        }
        catch (RpcException) when (!cancellationToken.IsCancellationRequested)
        {
            // The coordinator ended the call early (e.g. rejected the header); its status is in ResponseAsync below.
        }
        catch (InvalidOperationException) when (!cancellationToken.IsCancellationRequested)
        {
            // Writing after the call completed: same as above.
        }

        return (await call.ResponseAsync, images.ImagesSent);
    }

    /// <summary>A prompt as the protocol carries it: only what it sets itself (the header has the rest).</summary>
    private static PromptItem ToPromptItem(PromptEntry entry, HiresFix? jobHires, string sourceName)
    {
        var item = new PromptItem { Prompt = entry.Prompt };
        if (entry.NegativePrompt is not null)
        {
            item.NegativePrompt = entry.NegativePrompt;
        }

        if (entry.Seeds is not null)
        {
            item.Seeds.AddRange(entry.Seeds);
        }

        if (entry.Loras is { } loras)
        {
            item.Loras.AddRange(loras.Select(LoraMessages.ToMessage));
        }

        if (entry.Overrides is { } o)
        {
            if (o.Steps is { } steps) item.Steps = steps;
            if (o.Guidance is { } guidance) item.GuidanceScale = guidance;
            if (o.Width is { } width) item.Width = width;
            if (o.Height is { } height) item.Height = height;
            if (o.Scheduler is { } scheduler) item.Scheduler = scheduler;
            if (o.Model is { } model) item.Model = model;
        }

        if (entry.Upscaler is { } upscaler) item.Upscaler = upscaler;
        if (entry.Refiner is { } refiner) item.Refiner = refiner;
        if (entry.RefinerStart is { } refinerStart) item.RefinerStart = refinerStart;
        if (entry.Hires is { Off: true }) item.NoHires = true;
        else if (entry.Hires is { } hires)
        {
            // A prompt's hires columns fill in over the job's flags; the coordinator takes the result whole.
            item.Hires = hires.Over(HiresSettings.From(jobHires)).ToMessage()
                ?? throw new PromptFileException(sourceName, entry.Line, HiresSettings.Problem(hires, jobHires)!);
        }

        return item;
    }
}
