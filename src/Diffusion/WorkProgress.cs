namespace RenderFarm.Diffusion;

/// <summary>
/// Work a render does besides its denoising steps, told as it goes so that a caller watching for hangs can tell it from
/// one: a model run that is not a step (a VAE decode or encode, an upscaler tile) when it ends, and a model loaded on
/// first use (a ControlNet, a LoRA variant; on TensorRT an engine build can take minutes) when it starts
/// (<see cref="Loading"/>) and when it ends. A caller receives these by passing, as the render's progress, an object
/// that implements <see cref="IProgress{T}"/> of this besides <see cref="IProgress{T}"/> of <see cref="StepProgress"/>.
/// </summary>
/// <param name="What">What was done, or is being loaded (for logs): "upscale tile", "VAE decode", "ControlNet canny".</param>
/// <param name="Loading">A load starts now and runs until the next report: no progress can be told meanwhile.</param>
public readonly record struct WorkProgress(string What, bool Loading = false);
