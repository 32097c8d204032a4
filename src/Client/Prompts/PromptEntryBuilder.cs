using System.Globalization;
using RenderFarm.Client.Submit;
using RenderFarm.GenerationRules;

namespace RenderFarm.Client.Prompts;

/// <summary>
/// Collects one prompt's fields as a reader finds them, checks each value's form (the coordinator checks ranges) and
/// builds the <see cref="PromptEntry"/>. Every problem is a <see cref="PromptFileException"/> on the prompt's line.
/// </summary>
public sealed class PromptEntryBuilder(string source, int lineNumber, string? baseDirectory)
{
    private string? _prompt, _negative;
    private IReadOnlyList<long>? _seeds;
    private uint? _steps, _width, _height;
    private float? _guidance, _strength;
    private string? _scheduler, _model, _initImage, _mask;
    private List<LoraWeight>? _loras;
    private string? _upscaler;
    private HiresSettings _hires = new();
    private List<ControlNetSpec>? _controlNets;
    private string? _refiner;
    private float? _refinerStart;

    public PromptFileException Error(string reason) => new(source, lineNumber, reason);

    public void SetPrompt(string prompt) => _prompt = prompt;

    public void SetNegative(string? negative) => _negative = negative;

    /// <summary>The prompt's own seeds (null: the job's apply).</summary>
    public void SetSeeds(IReadOnlyList<long>? seeds) =>
        _seeds = seeds is null || seeds.Count <= SeedPlan.MaxSeeds
            ? seeds
            : throw Error($"more than {SeedPlan.MaxSeeds} seeds for one prompt");

    /// <summary>A per-prompt setting, image or strength; null text (an empty cell, JSON null) leaves the job's.</summary>
    public void Set(PromptField field, string name, string? text)
    {
        if (text is null) return;
        switch (field)
        {
            case PromptField.Steps: _steps = Positive(name, text); break;
            case PromptField.Width: _width = Positive(name, text); break;
            case PromptField.Height: _height = Positive(name, text); break;
            case PromptField.Guidance:
                _guidance = float.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var g) && float.IsFinite(g) && g >= 0
                    ? g
                    : throw Error($"'{name}' must be a non-negative number, got '{text}'");
                break;
            case PromptField.Size:
                var size = ImageSize.TryParse(text, out var error) ?? throw Error($"'{name}': {error}");
                (_width, _height) = (size.Width, size.Height);
                break;
            case PromptField.Scheduler: _scheduler = text; break;
            case PromptField.Model: _model = text; break;
            case PromptField.InitImage: _initImage = ResolvePath(name, text); break;
            case PromptField.Mask: _mask = ResolvePath(name, text); break;
            case PromptField.Strength:
                _strength = PromptImages.TryParseStrength(text) ?? throw Error($"'{name}' must be a number in (0, 1], got '{text}'");
                break;
            case PromptField.Loras:
                AddLoras(name, text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries));
                break;
            case PromptField.Upscale:
                _upscaler = text.Trim().ToLowerInvariant() is "none" or "off" ? "" : HiresSettings.ParseUpscaleName(text, out var upscaleError) ?? throw Error($"'{name}': {upscaleError}");
                break;
            case PromptField.Hires:
                _hires = text.Trim().ToLowerInvariant() is "off" or "none" or "0"
                    ? _hires with { Off = true }
                    : _hires with { Scale = HiresSettings.ParseScale(text, out var scaleError) ?? throw Error($"'{name}' {scaleError}") };
                break;
            case PromptField.HiresSteps:
                _hires = _hires with
                {
                    Steps = uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var hiresSteps)
                        ? hiresSteps
                        : throw Error($"'{name}' must be a whole number of steps (0: the prompt's steps), got '{text}'"),
                };
                break;
            case PromptField.HiresDenoise:
                _hires = _hires with { Denoise = HiresSettings.ParseDenoise(text, out var denoiseError) ?? throw Error($"'{name}' {denoiseError}") };
                break;
            case PromptField.HiresUpscaler:
                _hires = _hires with { Upscaler = HiresSettings.ParseUpscaler(text, out var upscalerError) ?? throw Error($"'{name}': {upscalerError}") };
                break;
            case PromptField.ControlNets:
                AddControlNets(name, text.Split(';', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries));
                break;
            case PromptField.Refiner:
                _refiner = RefinerRule.IsOff(text) ? "" : text.Trim();
                break;
            case PromptField.RefinerStart:
                _refinerStart = RefinerRule.ParseStart(text, out var startError) ?? throw Error($"'{name}' {startError}");
                break;
        }
    }

    /// <summary>The prompt's LoRAs, each written as <c>farm submit --lora</c> takes it (<c>style:0.8</c>).</summary>
    public void AddLoras(string name, IEnumerable<string> specs)
    {
        foreach (var spec in specs)
        {
            try
            {
                (_loras ??= []).Add(LoraPrompt.ParseSpec(spec));
            }
            catch (ArgumentException e)
            {
                throw Error($"'{name}': {e.Message}");
            }
        }
    }

    /// <summary>The prompt's ControlNets, each written as <c>farm submit --control</c> takes it (<c>canny:edges.png:0.8</c>).</summary>
    public void AddControlNets(string name, IEnumerable<string> specs)
    {
        foreach (var text in specs)
        {
            ControlNetSpec spec;
            try
            {
                spec = ControlNetSpec.Parse(text);
            }
            catch (ArgumentException e)
            {
                throw Error($"'{name}': {e.Message}");
            }
            (_controlNets ??= []).Add(spec with { Image = ResolvePath(name, spec.Image)! });
        }
        if (_controlNets?.Count > ControlNetSpec.MaxPerImage)
        {
            throw Error($"'{name}': at most {ControlNetSpec.MaxPerImage} ControlNets per prompt");
        }
    }

    public PromptEntry Build()
    {
        if (_prompt is null)
        {
            throw Error("missing 'prompt'");
        }

        if (_prompt.Length == 0)
        {
            throw Error("prompt is empty");
        }

        if (_prompt.Contains('\0'))
        {
            throw Error("prompt contains a NUL character");
        }

        // <lora:name:0.8> tags are read now as the farm will read them: a malformed one is this line's error.
        foreach (var (field, text) in new[] { ("prompt", _prompt), ("negative", _negative ?? "") })
        {
            try
            {
                LoraPrompt.Parse(text);
            }
            catch (ArgumentException e)
            {
                throw Error($"'{field}': {e.Message}");
            }
        }

        var overrides = _steps is null && _guidance is null && _width is null && _height is null && _scheduler is null && _model is null
            ? null
            : new PromptOverrides(_steps, _guidance, _width, _height, _scheduler, _model);
        var images = _initImage is null && _mask is null && _strength is null ? null : new PromptImages(_initImage, _mask, _strength);
        if (!_hires.IsEmpty && _hires.Off && _hires with { Off = false } is { IsEmpty: false })
        {
            throw Error("'hires' is off, so hires_steps, hires_denoise and hires_upscaler have nothing to apply to");
        }

        if (_refiner is "" && _refinerStart is not null)
        {
            throw Error("'refiner' is none, so refiner_start has nothing to apply to");
        }

        return new PromptEntry(lineNumber, _prompt, _negative, _seeds, overrides, images, _loras, _upscaler, _hires.IsEmpty ? null : _hires)
        {
            ControlNets = _controlNets, Refiner = _refiner, RefinerStart = _refinerStart,
        };
    }

    private string? ResolvePath(string name, string text)
    {
        if (text.Trim().Length == 0)
        {
            return null; // an empty string, like an empty cell: the --init-image / --mask default applies
        }

        try
        {
            return Path.GetFullPath(text, baseDirectory ?? Directory.GetCurrentDirectory());
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw Error($"'{name}' is not a usable file path: '{text}'");
        }
    }

    private uint Positive(string name, string text) =>
        uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var v) && v > 0
            ? v
            : throw Error($"'{name}' must be a positive integer, got '{text}'");
}
