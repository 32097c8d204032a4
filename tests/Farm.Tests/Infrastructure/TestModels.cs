using RenderFarm.ModelBuilder;

namespace RenderFarm.Farm.Tests.Infrastructure;

/// <summary>Model directories for tests beyond the tiny model every farm has.</summary>
public static class TestModels
{
    /// <summary>
    /// A broken install: "tiny" with the text encoder of tiny-sd2. It loads, and every render fails with the same error
    /// ("the components do not belong together").
    /// </summary>
    public static string WriteBroken(string root)
    {
        var broken = Path.Combine(root, "broken-model");
        if (Directory.Exists(broken)) return broken;
        var donor = Path.Combine(root, "donor-model");
        ModelPresets.Write("tiny", broken);
        ModelPresets.Write("tiny-sd2", donor);
        File.Copy(Path.Combine(donor, "text_encoder", "model.onnx"), Path.Combine(broken, "text_encoder", "model.onnx"), overwrite: true);
        return broken;
    }
}
