using RenderFarm.Coordinator;
using RenderFarm.Coordinator.Security;
using RenderFarm.Shared.Health;

// appsettings.json ships beside the binary: find it whatever the working directory is.
var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
if (args is ["keys", ..])
    return await KeysCommand.RunAsync(args, builder.Configuration, Console.Out, Console.Error);
// The image's HEALTHCHECK: this process's own gRPC health service, on the endpoint it listens on.
if (args is ["health", ..])
    return await HealthProbe.RunAsync(args, builder.Configuration["Kestrel:Endpoints:Grpc:Url"] ?? builder.Configuration["Urls"],
        Console.Out, Console.Error);

builder.AddCoordinatorHost();
var app = builder.Build();
app.MapCoordinator();
app.Run();
return 0;
