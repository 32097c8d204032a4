using RenderFarm.Coordinator;
using RenderFarm.Coordinator.Security;

// appsettings.json ships beside the binary: find it whatever the working directory is.
var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
if (args is ["keys", ..])
    return await KeysCommand.RunAsync(args, builder.Configuration, Console.Out, Console.Error);

builder.AddCoordinatorHost();
var app = builder.Build();
app.MapCoordinator();
app.Run();
return 0;
