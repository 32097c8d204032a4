using System.Diagnostics;

namespace RenderFarm.Farm.Tests.Infrastructure;

/// <summary>
/// One of our programs (coordinator, worker, farm) run as a real child process from its build output, with its
/// configuration in environment variables, as deployments run it. Output goes to a log file for post-mortems.
/// </summary>
public sealed class AppProcess : IAsyncDisposable
{
    private readonly Process _process;

    private AppProcess(Process process, string logPath)
    {
        _process = process;
        LogPath = logPath;
    }

    public string LogPath { get; }
    public bool HasExited => _process.HasExited;
    public int Id => _process.Id;

    /// <summary>The checkout these tests were built from (the folder holding RenderFarm.sln).</summary>
    public static string RepositoryRoot()
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "RenderFarm.sln"))) root = root.Parent;
        return root?.FullName ?? throw new InvalidOperationException("repository root not found");
    }

    /// <summary>Path of a project's built entry assembly, in the same configuration as these tests.</summary>
    public static string EntryAssembly(string project, string assembly)
    {
        var here = AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar); // .../tests/Farm.Tests/bin/<Configuration>/net10.0
        var configuration = new DirectoryInfo(here).Parent!.Name;
        var path = Path.Combine(RepositoryRoot(), "src", project, "bin", configuration, "net10.0", assembly + ".dll");
        return File.Exists(path) ? path : throw new FileNotFoundException($"build {project} first ({path} is missing)");
    }

    public static AppProcess Start(string assemblyPath, IReadOnlyDictionary<string, string> environment, string logPath, params string[] args) =>
        Start([], assemblyPath, environment, logPath, args);

    /// <param name="launcher">A command that runs <c>dotnet</c> for us (e.g. <c>prlimit --as=BYTES --</c>), or none.</param>
    public static AppProcess Start(IReadOnlyList<string> launcher, string assemblyPath, IReadOnlyDictionary<string, string> environment,
        string logPath, params string[] args)
    {
        var info = new ProcessStartInfo(launcher.Count > 0 ? launcher[0] : "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = Path.GetDirectoryName(logPath)!,
        };
        foreach (var arg in launcher.Skip(1)) info.ArgumentList.Add(arg);
        if (launcher.Count > 0) info.ArgumentList.Add("dotnet");
        info.ArgumentList.Add(assemblyPath);
        foreach (var arg in args) info.ArgumentList.Add(arg);
        foreach (var (key, value) in environment) info.Environment[key] = value;
        info.Environment["DOTNET_ENVIRONMENT"] = "Testing";
        info.Environment["ASPNETCORE_ENVIRONMENT"] = "Testing";

        var process = Process.Start(info)!;
        var log = new StreamWriter(logPath, append: true) { AutoFlush = true };
        var gate = new object();
        var openStreams = 2;
        // A null line is a stream's end; the log closes after both ended. Closing it on Exited instead raced with
        // output still being drained after the exit, and a write to the closed log crashed the test host.
        void Write(string? line)
        {
            lock (gate)
            {
                if (line is not null) { if (openStreams > 0) log.WriteLine(line); }
                else if (--openStreams == 0) log.Dispose();
            }
        }
        process.OutputDataReceived += (_, e) => Write(e.Data);
        process.ErrorDataReceived += (_, e) => Write(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return new AppProcess(process, logPath);
    }

    /// <summary>SIGTERM, as Kubernetes and docker stop send; waits up to <paramref name="timeout"/> for the exit.</summary>
    public async Task<bool> TerminateAsync(TimeSpan timeout)
    {
        using (var kill = Process.Start("kill", ["-TERM", _process.Id.ToString()])) await kill.WaitForExitAsync();
        using var wait = new CancellationTokenSource(timeout);
        try { await _process.WaitForExitAsync(wait.Token); return true; }
        catch (OperationCanceledException) { return false; }
    }

    /// <summary>Waits for a program that ends by itself (e.g. a <c>farm</c> command); its exit code, or a timeout error naming its log.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var wait = new CancellationTokenSource(timeout);
        try { await _process.WaitForExitAsync(wait.Token); }
        catch (OperationCanceledException) { throw new TimeoutException($"process {_process.Id} still running after {timeout}; see {LogPath}"); }
        return _process.ExitCode;
    }

    /// <summary>kill -9: no shutdown code runs, as when a machine dies.</summary>
    public async Task KillAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        _process.Dispose();
    }
}
