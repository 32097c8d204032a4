namespace RenderFarm.Diffusion; internal static class Placeholder {}
