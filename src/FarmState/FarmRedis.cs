using StackExchange.Redis;

namespace RenderFarm.FarmState;

/// <summary>Creates the one <see cref="ConnectionMultiplexer"/> a process shares.</summary>
public static class FarmRedis
{
    public static ConnectionMultiplexer Connect(string configuration, string clientName)
    {
        var options = ConfigurationOptions.Parse(configuration);
        // Start even if Redis is briefly down (a restart, a pod still scheduling); commands fail until it is back.
        options.AbortOnConnectFail = false;
        options.ClientName ??= clientName;
        return ConnectionMultiplexer.Connect(options);
    }
}
