namespace RenderFarm.ModelBuilder;

public enum Activation { QuickGelu, Gelu }
