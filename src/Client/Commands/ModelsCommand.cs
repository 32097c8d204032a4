using System.CommandLine;
using RenderFarm.Client.Cli;
using RenderFarm.Client.Output;
using RenderFarm.Protocol;

namespace RenderFarm.Client.Commands;

/// <summary><c>farm models</c>: the models the farm can render now, as a table or a JSON array.</summary>
public static class ModelsCommand
{
    public static Command Create(FarmCliHost host, GlobalOptions globals)
    {
        var json = JsonFlag.Create("Print a JSON array (name, workers, workers_holding, shards_waiting, loras and embeddings: name, short_hash, family).");
        var command = new Command("models", "List the models, LoRAs, embeddings, ControlNets and upscalers the farm can use now.\n\n" +
                                            "Each model with the workers serving it (and holding it loaded) and the shards waiting for them; then the LoRAs\n" +
                                            "(<lora:NAME:0.8> in a prompt, or --lora NAME:0.8), textual-inversion embeddings (NAME in a prompt) and ControlNets\n" +
                                            "(--control NAME:IMAGE) their workers offer, with the short hash PNGs carry, and the upscalers (--upscale NAME, --hires-upscaler NAME) with their scale.\n\nExample:\n  farm models")
        {
            json,
        };
        command.SetAction((parseResult, ct) => CommandContext.RunAsync(host, globals, parseResult, ct, async context =>
        {
            var response = await context.Coordinator.Client.ListModelsAsync(new ListModelsRequest(), context.Coordinator.CallOptions(ct));
            if (parseResult.GetValue(json))
            {
                context.Out.WriteLine(JsonText.Array(response.Models, (m, j) =>
                {
                    j.WriteString("name", m.Name);
                    j.WriteNumber("workers", m.Workers);
                    j.WriteNumber("workers_holding", m.WorkersHolding);
                    j.WriteNumber("shards_waiting", m.ShardsWaiting);
                    WriteFiles(j, "loras", m.Loras.Select(l => (l.Name, l.ShortHash, l.Family)));
                    WriteFiles(j, "embeddings", m.Embeddings.Select(e => (e.Name, e.ShortHash, e.Family)));
                    j.WriteStartArray("upscalers");
                    foreach (var upscaler in m.Upscalers)
                    {
                        j.WriteStartObject();
                        j.WriteString("name", upscaler.Name);
                        j.WriteNumber("scale", upscaler.Scale);
                        j.WriteEndObject();
                    }
                    j.WriteEndArray();
                    j.WriteStartArray("controlnets");
                    foreach (var c in m.ControlNets) j.WriteStringValue(c);
                    j.WriteEndArray();
                }));
                return ExitCodes.Ok;
            }

            context.Out.Write(TextTable.Format(["MODEL", "WORKERS", "HOLDING", "SHARDS WAITING", "LORAS", "EMBEDDINGS"],
                response.Models.Select(m => (IReadOnlyList<string>)
                [
                    m.Name, TextTable.Number(m.Workers), TextTable.Number(m.WorkersHolding), TextTable.Number(m.ShardsWaiting),
                    TextTable.Number((ulong)m.Loras.Count), TextTable.Number((ulong)m.Embeddings.Count),
                ])));
            // Each file once, with the models it is offered for.
            var files = response.Models
                .SelectMany(m => m.Loras.Select(l => (Kind: "lora", l.Name, l.ShortHash, l.Family, Model: m.Name))
                    .Concat(m.Embeddings.Select(e => (Kind: "embedding", e.Name, e.ShortHash, e.Family, Model: m.Name)))
                    // An upscaler (--upscale, --hires-upscaler) has no hash; its family column says its scale.
                    .Concat(m.Upscalers.Select(u => (Kind: "upscaler", u.Name, ShortHash: "-", Family: $"x{u.Scale}", Model: m.Name)))
                    .Concat(m.ControlNets.Select(c => (Kind: "controlnet", Name: c, ShortHash: "-", Family: "", Model: m.Name))))
                .GroupBy(f => (f.Kind, f.Name, f.ShortHash, f.Family))
                .OrderBy(g => g.Key.Kind, StringComparer.Ordinal).ThenBy(g => g.Key.Name, StringComparer.Ordinal)
                .ToList();
            if (files.Count > 0)
            {
                context.Out.WriteLine();
                context.Out.Write(TextTable.Format(["KIND", "NAME", "HASH", "FAMILY", "MODELS"],
                    files.Select(g => (IReadOnlyList<string>)
                    [
                        g.Key.Kind, g.Key.Name, g.Key.ShortHash, g.Key.Family.Length == 0 ? "any" : g.Key.Family, string.Join(",", g.Select(f => f.Model)),
                    ])));
            }

            return ExitCodes.Ok;
        }));
        return command;
    }

    private static void WriteFiles(System.Text.Json.Utf8JsonWriter json, string name, IEnumerable<(string Name, string ShortHash, string Family)> files)
    {
        json.WriteStartArray(name);
        foreach (var file in files)
        {
            json.WriteStartObject();
            json.WriteString("name", file.Name);
            json.WriteString("short_hash", file.ShortHash);
            json.WriteString("family", file.Family);
            json.WriteEndObject();
        }

        json.WriteEndArray();
    }
}
