using RenderFarm.Coordinator;

var builder = WebApplication.CreateBuilder(args);
builder.Services.AddCoordinator();
var app = builder.Build();
app.MapCoordinator();
app.Run();
