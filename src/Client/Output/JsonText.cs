using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace RenderFarm.Client.Output;

/// <summary>
/// One-line JSON for <c>--json</c> output and the pull manifest: non-ASCII text and characters such as <c>&lt;</c> stay
/// as they are (not \u-escaped), so prompts read naturally in a terminal or through <c>jq</c>.
/// </summary>
public static class JsonText
{
    private static readonly JsonWriterOptions Options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>One JSON object whose fields <paramref name="writeFields"/> writes.</summary>
    public static string Object(Action<Utf8JsonWriter> writeFields) =>
        Write(json =>
        {
            json.WriteStartObject();
            writeFields(json);
            json.WriteEndObject();
        });

    /// <summary>A JSON array of one object per item.</summary>
    public static string Array<T>(IEnumerable<T> items, Action<T, Utf8JsonWriter> writeFields) =>
        Write(json =>
        {
            json.WriteStartArray();
            foreach (var item in items)
            {
                json.WriteStartObject();
                writeFields(item, json);
                json.WriteEndObject();
            }

            json.WriteEndArray();
        });

    private static string Write(Action<Utf8JsonWriter> write)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, Options))
        {
            write(json);
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }
}
