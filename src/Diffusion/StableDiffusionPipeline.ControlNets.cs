using RenderFarm.Diffusion.ControlNets;
using RenderFarm.Diffusion.Generation;
using RenderFarm.Diffusion.Models;
using RenderFarm.GenerationRules;

namespace RenderFarm.Diffusion;

/// <summary>
/// ControlNet: which UNet takes the residuals, loading ControlNets on first use, checking a request's units. The UNet is
/// the model's own <c>unet/</c> when it takes residual inputs (then every request feeds it residuals, zeros without a
/// ControlNet), else <c>controlnet/model.onnx</c> beside it (OnnxStack's layout: <c>unet/</c> stays the plain UNet,
/// used by requests without ControlNets), loaded on the first request that names a ControlNet.
/// </summary>
public sealed partial class StableDiffusionPipeline
{
    /// <summary>The folder of a model directory holding the UNet that takes ControlNet residuals (OnnxStack's layout).</summary>
    public const string ControlNetUNetComponent = "controlnet";

    private ControlNetLibrary? _controlNetLibrary;
    private UNet? _controlUnet;
    private readonly Dictionary<string, ControlNet> _loadedControlNets = new(StringComparer.Ordinal);
    private readonly List<OnnxComponent> _controlComponents = [];

    /// <summary>
    /// Whether requests may name ControlNets: the model's unet takes ControlNet residuals, or the directory has
    /// controlnet/model.onnx.
    /// </summary>
    public bool SupportsControlNets => _unet.Residuals is not null || File.Exists(OnnxComponent.ModelPath(ModelDirectory, ControlNetUNetComponent));

    /// <summary>
    /// Whether the model directory can take ControlNets without loading it: it has controlnet/model.onnx, or its unet
    /// has ControlNet residual inputs (read from the graph's inputs with a bare session; the weights stay mapped).
    /// </summary>
    public static bool TakesControlNets(string modelDirectory)
    {
        if (File.Exists(OnnxComponent.ModelPath(modelDirectory, ControlNetUNetComponent)))
        {
            return true;
        }
        var unet = OnnxComponent.ModelPath(modelDirectory, "unet");
        if (!File.Exists(unet))
        {
            return false;
        }
        return OnnxComponent.ReadInputs(unet).Keys.Any(ControlResiduals.IsResidualInput);
    }

    /// <summary>The ControlNets requests may name (those of <see cref="ModelExtensions.ControlNets"/>) when the model supports them.</summary>
    public IReadOnlyList<string> ControlNetNames => SupportsControlNets ? _controlNetLibrary?.Names ?? [] : [];

    /// <summary>Checks a request's ControlNet units against this model and the library (not their images: those are decoded when it runs).</summary>
    private void CheckControlNets(GenerationRequest request, IReadOnlyList<LoraSet> loras)
    {
        var units = request.ControlNets ?? [];
        if (units.Count == 0)
        {
            return;
        }
        if (units.Count > ControlNetUnit.MaxPerRequest)
        {
            throw new ArgumentException($"A request may use at most {ControlNetUnit.MaxPerRequest} ControlNets, not {units.Count}.", nameof(request.ControlNets));
        }
        if (!SupportsControlNets)
        {
            throw new ArgumentException(
                $"This model cannot take ControlNets: its unet has no {ControlResiduals.DownName(0)}… inputs and it has no {ControlNetUNetComponent}/model.onnx.",
                nameof(request.ControlNets));
        }
        for (int i = 0; i < units.Count; i++)
        {
            var unit = units[i];
            if (unit is null || string.IsNullOrEmpty(unit.Model) || unit.Image is null || unit.Image.Length == 0)
            {
                throw new ArgumentException($"ControlNet {i} needs a model name and a control image.", nameof(request.ControlNets));
            }
            if (!float.IsFinite(unit.Weight))
            {
                throw new ArgumentException($"ControlNet {i} ({unit.Model}) has weight {unit.Weight}; a finite number is expected.", nameof(request.ControlNets));
            }
            if (ControlNetSpec.ProblemWithWindow(unit.GuidanceStart, unit.GuidanceEnd) is { } window)
            {
                throw new ArgumentException($"ControlNet {i} ({unit.Model}): {window}.", nameof(request.ControlNets));
            }
            if (_controlNetLibrary is null || !_controlNetLibrary.Contains(unit.Model))
            {
                throw new ArgumentException(
                    $"Unknown ControlNet '{unit.Model}'; offered: {(_controlNetLibrary?.Names.Count > 0 ? string.Join(", ", _controlNetLibrary.Names) : "none")}.",
                    nameof(request.ControlNets));
            }
        }
        if (_unet.Residuals is null && loras.Any(l => !l.IsEmpty))
        {
            throw new ArgumentException(
                $"LoRAs cannot be combined with ControlNets on this model: its ControlNet unet ({ControlNetUNetComponent}/) is a separate file LoRAs are not applied to.",
                nameof(request.ControlNets));
        }
    }

    /// <summary>
    /// The request's ControlNets, loaded, with their control images prepared (each decoded and resized once), and the
    /// UNet they feed; null for a request without ControlNets. Runs on the model thread.
    /// </summary>
    private ControlSetup? PrepareControl(GenerationRequest request)
    {
        var units = request.ControlNets ?? [];
        if (units.Count == 0)
        {
            return null;
        }
        var prepared = units.Select((unit, i) =>
        {
            var net = LoadControlNet(unit.Model);
            return (net, ControlGuidance.PrepareImage(unit, i, request.Width, request.Height, _options.MaxImagePixels), unit);
        }).ToArray();
        var unet = _unet.Residuals is not null ? null : ControlUNet();
        foreach (var (net, _, _) in prepared)
        {
            net.CheckFits(unet ?? _unet);
        }
        return new ControlSetup(prepared, unet);
    }

    private ControlNet LoadControlNet(string name)
    {
        if (!_loadedControlNets.TryGetValue(name, out var net))
        {
            var component = Loading($"ControlNet {name}", () => OnnxComponent.Open(_controlNetLibrary!.Directory, name, ExecutionProviders.WithoutCudaGraph(_options)));
            try
            {
                net = new ControlNet(component);
            }
            catch
            {
                component.Dispose();
                throw;
            }
            _loadedControlNets[name] = net;
            lock (_controlComponents) _controlComponents.Add(component);
        }
        return net;
    }

    /// <summary>controlnet/model.onnx as a UNet, loaded once; it must take the plain unet's inputs plus the residuals.</summary>
    private UNet ControlUNet()
    {
        if (_controlUnet is not null)
        {
            return _controlUnet;
        }
        var placement = UNetPlacement.For(_options, ControlNetUNetComponent);
        var component = Loading(ControlNetUNetComponent, () => OnnxComponent.Open(ModelDirectory, ControlNetUNetComponent, _options));
        try
        {
            var unet = new UNet(component, placement);
            if (unet.Residuals is null)
            {
                throw component.Invalid($"it takes no ControlNet residuals ({ControlResiduals.DownName(0)}…, {ControlResiduals.MidName})");
            }
            if (!unet.ExtraInputs.Keys.Order().SequenceEqual(_unet.ExtraInputs.Keys.Order()) || unet.InChannels != _unet.InChannels)
            {
                throw component.Invalid("its inputs besides the residuals differ from unet/model.onnx's");
            }
            _controlUnet = unet;
            lock (_controlComponents) _controlComponents.Add(component);
            return unet;
        }
        catch
        {
            component.Dispose();
            throw;
        }
    }

    /// <summary>The ControlNet components loaded so far, for <see cref="Statistics"/>.</summary>
    private IEnumerable<OnnxComponent> ControlComponents()
    {
        lock (_controlComponents) return [.. _controlComponents];
    }

    private void DisposeControlNets()
    {
        _controlUnet?.Dispose(); // disposes its component
        foreach (var net in _loadedControlNets.Values) net.Dispose();
        _loadedControlNets.Clear();
    }

    /// <summary>A request's ControlNets with their prepared images, the UNet they feed (null: the model's own), and each model batch's guidance.</summary>
    private sealed class ControlSetup((ControlNet Net, float[] Image, ControlNetUnit Unit)[] units, UNet? unet) : IDisposable
    {
        private readonly List<ControlGuidance> _guidances = [];

        /// <summary>The separate ControlNet UNet, or null when the model's own unet (and its LoRA variants) take the residuals.</summary>
        public UNet? UNet => unet;

        /// <summary>The guidance of one model batch of a pass that runs steps [<paramref name="start"/>, <paramref name="end"/>).</summary>
        public ControlGuidance Guide(ControlResiduals residuals, int rows, bool guided, int latentHeight, int latentWidth, IReadOnlyList<UNetCondition> conditions,
            string hiddenName, int width, int height, int start, int end)
        {
            var guidance = new ControlGuidance(units, residuals, rows, guided, latentHeight, latentWidth, conditions, hiddenName, width, height, start, end);
            _guidances.Add(guidance);
            return guidance;
        }

        public void Dispose()
        {
            foreach (var guidance in _guidances) guidance.Dispose();
        }
    }
}
