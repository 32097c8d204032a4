using RenderFarm.Shared.Health;
using RenderFarm.Worker;

// appsettings.json ships beside the binary: find it whatever the working directory is.
var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
// The image's HEALTHCHECK: this process's own gRPC health service (`health --service liveness` for liveness).
if (args is ["health", ..])
    return await HealthProbe.RunAsync(args, builder.Configuration["Urls"], Console.Out, Console.Error);
builder.AddWorkerHost();
var app = builder.Build();
app.MapWorker();
app.Run();
return 0;
