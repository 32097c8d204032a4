using System.Collections.Concurrent;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;

namespace RenderFarm.Farm.Tests.Infrastructure;

/// <summary>A webhook receiver on loopback (HTTP/1.1): records every POST and answers with <see cref="Status"/>.</summary>
public sealed class WebhookReceiver : IAsyncDisposable
{
    private readonly WebApplication _app;

    public sealed record Delivery(string EventId, string Signature, string IdempotencyKey, byte[] Body);

    private WebhookReceiver(WebApplication app) => _app = app;

    public ConcurrentQueue<Delivery> Deliveries { get; } = new();

    /// <summary>What the receiver answers (200 unless a test makes it fail).</summary>
    public int Status { get; set; } = 200;

    /// <summary>Decides the answer to each delivery in place of <see cref="Status"/>, and may hold it back until it returns.</summary>
    public Func<Delivery, Task<int>>? Respond { get; set; }

    public string Url { get; private set; } = "";

    public static async Task<WebhookReceiver> StartAsync()
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { EnvironmentName = "Testing" });
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        var app = builder.Build();
        var receiver = new WebhookReceiver(app);
        app.MapPost("/hook", async (HttpContext context) =>
        {
            using var body = new MemoryStream();
            await context.Request.Body.CopyToAsync(body);
            var delivery = new Delivery(context.Request.Headers["X-RenderFarm-Event-Id"].ToString(),
                context.Request.Headers["X-RenderFarm-Signature"].ToString(), context.Request.Headers["Idempotency-Key"].ToString(), body.ToArray());
            receiver.Deliveries.Enqueue(delivery);
            context.Response.StatusCode = receiver.Respond is { } respond ? await respond(delivery) : receiver.Status;
        });
        await app.StartAsync();
        receiver.Url = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First() + "/hook";
        return receiver;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
