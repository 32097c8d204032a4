using System.Globalization;

namespace RenderFarm.ProgressBench;

/// <summary>CPU time from /proc: a process's utime + stime, and the whole machine's busy and total time.</summary>
public static class CpuClock
{
    private const double TicksPerSecond = 100; // USER_HZ on Linux

    public static double ProcessSeconds(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        // The command name (field 2) may hold spaces; the fields after its closing parenthesis start at field 3.
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / TicksPerSecond;
    }

    /// <summary>Seconds of CPU the machine spent busy and in all (summed over cores), since boot.</summary>
    public static (double Busy, double Total) Machine()
    {
        var cpu = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1)
            .Take(8).Select(v => long.Parse(v, CultureInfo.InvariantCulture)).ToArray();
        var total = cpu.Sum();
        var idle = cpu[3] + cpu[4]; // idle + iowait
        return ((total - idle) / TicksPerSecond, total / TicksPerSecond);
    }

    public static string LoadAverage() => File.ReadAllText("/proc/loadavg").Split(' ')[0];
}
