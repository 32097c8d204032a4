using System.Text.Json;

namespace RenderFarm.ModelBuilder;

internal static class Json
{
    private static readonly JsonSerializerOptions Options = new() { WriteIndented = true };

    public static void Write(string path, object value) =>
        File.WriteAllText(path, JsonSerializer.Serialize(value, Options) + "\n");
}
