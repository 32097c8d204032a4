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
        var json = JsonFlag.Create("Print a JSON array (name, workers, shards_waiting).");
        var command = new Command("models", "List the models the farm can render now: workers serving each and shards waiting for them.\n\nExample:\n  farm models")
        {
            json,
        };
        command.SetAction((parseResult, ct) => CommandContext.RunAsync(host, globals, parseResult, ct, async context =>
        {
            var response = await context.Coordinator.Client.ListModelsAsync(new ListModelsRequest(), context.Coordinator.CallOptions(ct));
            if (parseResult.GetValue(json))
                context.Out.WriteLine(JsonText.Array(response.Models, (m, j) =>
                {
                    j.WriteString("name", m.Name);
                    j.WriteNumber("workers", m.Workers);
                    j.WriteNumber("shards_waiting", m.ShardsWaiting);
                }));
            else
                context.Out.Write(TextTable.Format(["MODEL", "WORKERS", "SHARDS WAITING"],
                    response.Models.Select(m => (IReadOnlyList<string>)[m.Name, TextTable.Number(m.Workers), TextTable.Number(m.ShardsWaiting)])));
            return ExitCodes.Ok;
        }));
        return command;
    }
}
