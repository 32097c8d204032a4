using RenderFarm.Coordinator;

// appsettings.json ships beside the binary: find it whatever the working directory is.
var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
builder.AddCoordinatorHost();
var app = builder.Build();
app.MapCoordinator();
app.Run();
