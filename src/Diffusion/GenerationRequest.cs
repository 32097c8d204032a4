using RenderFarm.GenerationRules;

namespace RenderFarm.Diffusion;

/// <summary>
/// A batch of images sharing size, steps, guidance and scheduler; rendered as one UNet batch.
/// </summary>
public sealed record GenerationRequest(
    IReadOnlyList<ImagePrompt> Images,
    int Width,
    int Height,
    int Steps,
    float GuidanceScale,
    string Scheduler = "euler",
    string ModelName = "")
{
    /// <summary>
    /// CLIP skip as the SD UIs count it: 1 (default) uses the text encoder's last layer, 2 the penultimate, … (the
    /// chosen hidden state goes through the final layer norm, as AUTOMATIC1111 and diffusers do; SDXL always uses the
    /// layer before it, unnormalised). Values above 1 need an export with <c>hidden_states.N</c> outputs.
    /// </summary>
    public int ClipSkip { get; init; } = 1;

    /// <summary>
    /// img2img / inpainting source image (PNG or JPEG bytes), resized to Width×Height: the default for images whose
    /// <see cref="ImagePrompt.InitImage"/> is null.
    /// </summary>
    public byte[]? InitImage { get; init; }

    /// <summary>
    /// How much of the init images to repaint, in (0, 1], for the whole batch: denoising starts at step index
    /// <c>Steps − int(Steps·Strength)</c>. Null: 0.8 for img2img, 1.0 for inpainting (diffusers' defaults).
    /// </summary>
    public float? Strength { get; init; }

    /// <summary>
    /// Inpainting mask (PNG or JPEG bytes, white = repaint, black = keep): the default for images whose
    /// <see cref="ImagePrompt.MaskImage"/> is null; a mask needs an init image.
    /// </summary>
    public byte[]? MaskImage { get; init; }

    /// <summary>When true, each <see cref="StepProgress"/> carries a <see cref="LatentPreview"/> of the current latents.</summary>
    public bool Previews { get; init; }

    /// <summary>With <see cref="Previews"/>: only every this many steps (1-based step numbers divisible by it) carries one.</summary>
    public int PreviewEvery { get; init; } = 1;

    /// <summary>
    /// LoRAs for every image of the request (e.g. <c>farm submit --lora</c>), applied before those an image's prompt asks
    /// for with <c>&lt;lora:name:w&gt;</c> tags (a name in both adds up). Images whose LoRA sets differ are rendered in
    /// separate model runs (one UNet batch per set); see <see cref="StableDiffusionPipeline.LorasOf"/>.
    /// </summary>
    public LoraSet Loras { get; init; } = LoraSet.Empty;

    /// <summary>
    /// False: the prompts' <c>&lt;lora:…&gt;</c> tags stay in their text (and the PNG parameters) but select no LoRA. A
    /// refiner continuing a base that rendered with them sets it: a base's LoRA does not fit the refiner's UNet.
    /// </summary>
    public bool ApplyPromptLoras { get; init; } = true;

    /// <summary>
    /// Base + refiner (diffusers' denoising_end): stop after the steps whose timestep is at least
    /// round(T − DenoisingEnd·T), in (0, 1); <see cref="StableDiffusionPipeline.RenderLatentsAsync"/> hands the latents
    /// over. Null: every step.
    /// </summary>
    public float? DenoisingEnd { get; init; }

    /// <summary>
    /// Base + refiner (diffusers' denoising_start): start from <see cref="InitLatents"/> as they are (no noise added) at
    /// the first step whose timestep is below round(T − DenoisingStart·T), in (0, 1). Needs <see cref="InitLatents"/>.
    /// Continuing an img2img base, give its <see cref="Strength"/> too (no init image): when the switch comes before the
    /// base's first step, both meet where the base started. Continuing an inpainting base, give its init images and
    /// masks too (diffusers' inpainting pipelines with denoising_start): the unmasked area is kept from the init
    /// latents each step as the base kept it (or fed to an inpainting UNet as mask and masked-image latents).
    /// </summary>
    public float? DenoisingStart { get; init; }

    /// <summary>
    /// The latents [images, C, h, w] another model's <see cref="StableDiffusionPipeline.RenderLatentsAsync"/> stopped at
    /// (with <see cref="DenoisingStart"/>); the same steps and scheduler on both sides continue one schedule.
    /// </summary>
    public float[]? InitLatents { get; init; }

    /// <summary>
    /// With <see cref="DenoisingStart"/>: the base model whose latents this request refines. The PNG parameters then
    /// name it as the Model, this request's model as the Refiner and DenoisingStart as the switch, as A1111 writes them.
    /// </summary>
    public string? BaseModel { get; init; }

    /// <summary>
    /// With <see cref="BaseModel"/>: the ControlNets that steered the base's render. They do not run here (they were made
    /// for the base's UNet); the PNG parameters record them, as A1111 records a job's units.
    /// </summary>
    public IReadOnlyList<ControlNets.ControlNetUnit> BaseControlNets { get; init; } = [];

    /// <summary>
    /// With <see cref="BaseModel"/>: the LoRAs the base rendered with besides its prompts' tags (its <see cref="Loras"/>).
    /// They do not apply here (a base's LoRA does not fit the refiner's UNet); the PNG parameters record them with the
    /// tags' LoRAs as the base's would (<c>Lora hashes</c>), by <see cref="BaseLoraHashes"/>.
    /// </summary>
    public LoraSet BaseLoras { get; init; } = LoraSet.Empty;

    /// <summary>
    /// With <see cref="BaseModel"/>: the short hash of each LoRA the base rendered with, by name (the refiner's process
    /// need not hold the files). A LoRA without one is left out of <c>Lora hashes</c>.
    /// </summary>
    public IReadOnlyDictionary<string, string> BaseLoraHashes { get; init; } = new Dictionary<string, string>();

    /// <summary>Hires fix (<see cref="HiresFix"/>): a second, img2img pass at a larger size. Null: none.</summary>
    public HiresFix? Hires { get; init; }

    /// <summary>Upscales the finished images with a model of <see cref="ModelExtensions.Upscalers"/> (<see cref="UpscaleRequest"/>). Null: none.</summary>
    public UpscaleRequest? Upscale { get; init; }

    /// <summary>
    /// ControlNets steering every image of the request (<see cref="ControlNets.ControlNetUnit"/>), their residuals
    /// summed; empty: none. The model needs a UNet that takes ControlNet residuals.
    /// </summary>
    public IReadOnlyList<ControlNets.ControlNetUnit> ControlNets { get; init; } = [];
}
