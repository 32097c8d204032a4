using RenderFarm.Worker;

// appsettings.json ships beside the binary: find it whatever the working directory is.
var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
builder.AddWorkerHost();
var app = builder.Build();
app.MapWorker();
app.Run();
