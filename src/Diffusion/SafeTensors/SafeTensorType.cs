namespace RenderFarm.Diffusion.SafeTensors;

/// <summary>Element types a <see cref="SafeTensorsFile"/> reads as float32.</summary>
public enum SafeTensorType
{
    F32,
    F16,
    BF16,
}
