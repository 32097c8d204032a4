using RenderFarm.Worker;

var builder = WebApplication.CreateBuilder(args);
builder.Services.AddWorker();
var app = builder.Build();
app.MapWorker();
app.Run();
