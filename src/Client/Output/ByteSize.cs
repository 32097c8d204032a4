using System.Globalization;

namespace RenderFarm.Client.Output;

/// <summary>Byte counts for people: binary units, one decimal.</summary>
public static class ByteSize
{
    private static readonly string[] Units = ["B", "KiB", "MiB", "GiB", "TiB"];

    /// <summary>"812 B", "5.1 KiB", "3.2 MiB", "1.4 GiB".</summary>
    public static string Short(long bytes)
    {
        var value = (double)bytes;
        var unit = 0;
        for (; value >= 1024 && unit < Units.Length - 1; unit++)
        {
            value /= 1024;
        }

        return unit == 0
            ? string.Create(CultureInfo.InvariantCulture, $"{bytes} B")
            : string.Create(CultureInfo.InvariantCulture, $"{value:0.0} {Units[unit]}");
    }

    /// <summary>"512 bytes", "3174 bytes (3.1 KiB)", "12582912 bytes (12.0 MiB)".</summary>
    public static string Exact(long bytes)
    {
        var exact = string.Create(CultureInfo.InvariantCulture, $"{bytes} bytes");
        return bytes < 1024 ? exact : $"{exact} ({Short(bytes)})";
    }
}
