using RenderFarm.Worker;

// appsettings.json ships beside the binary: find it whatever the working directory is.
var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
builder.Services.AddWorker();
var app = builder.Build();
app.MapWorker();
app.Run();
