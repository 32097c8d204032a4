namespace RenderFarm.Worker.Models;

/// <summary>
/// Loads the model <paramref name="name"/> from <paramref name="directory"/> (its Farm:Models entry) into a renderer:
/// the ONNX pipeline with the worker's LoRAs and embeddings, or a synthetic one. Blocks while ONNX Runtime creates the
/// sessions; <see cref="ModelCatalog"/> calls it off the caller's thread, whenever a model it evicted is wanted again.
/// </summary>
public delegate IShardRenderer ModelLoader(string name, string directory);
