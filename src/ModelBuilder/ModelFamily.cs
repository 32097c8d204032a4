namespace RenderFarm.ModelBuilder;

public enum ModelFamily { StableDiffusion, StableDiffusionInpaint, StableDiffusion2, StableDiffusionXL }
