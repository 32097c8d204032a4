namespace RenderFarm.Diffusion.Weights;

/// <summary>
/// A weight with a new value: the initializer it replaces, its shape (an embedding table may grow) and its float32
/// values, converted to the initializer's element type when given to a session (<see cref="WeightOverrides"/>).
/// </summary>
internal sealed record ReplacedWeight(OnnxInitializer Initializer, long[] Shape, float[] Values);
