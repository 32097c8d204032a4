using System.Text;
using StackExchange.Redis;

namespace RenderFarm.FarmState;

/// <summary>
/// A Lua script the farm runs in Redis: every change that touches several keys (or reads and then writes) is one
/// script, so it is atomic. A script has a name and declares its parameters: the keys it touches (KEYS, in order) and
/// the arguments it takes (ARGV, in order), which its body reads as Lua locals of those names. Schema names (fields,
/// states, event types) are spliced into bodies from this project's constants, never spelled there.
/// The keys of one script share a hash tag (<see cref="FarmKeys.JobTag"/>), so it runs unchanged on Redis Cluster.
/// </summary>
public sealed class FarmScript
{
    /// <param name="name">What the script does, for readers and error messages.</param>
    /// <param name="keys">Names of its KEYS, in order: Lua identifiers.</param>
    /// <param name="args">Names of its ARGV, in order: Lua identifiers. A body may read further arguments (a list) as ARGV[n] past these.</param>
    /// <param name="body">The Lua code after the declarations.</param>
    /// <param name="moreKeys">The body reads further keys (a list, all in the first key's slot) as KEYS[n] past <paramref name="keys"/>.</param>
    public FarmScript(string name, string[] keys, string[] args, string body, bool moreKeys = false)
    {
        Name = name;
        MoreKeys = moreKeys;
        Keys = keys;
        Args = args;
        var source = new StringBuilder().Append("-- ").Append(name).Append('\n');
        for (var i = 0; i < keys.Length; i++) source.Append($"local {keys[i]} = KEYS[{i + 1}]\n");
        for (var i = 0; i < args.Length; i++) source.Append($"local {args[i]} = ARGV[{i + 1}]\n");
        Source = source.Append(body).ToString();
    }

    public string Name { get; }

    public IReadOnlyList<string> Keys { get; }

    public IReadOnlyList<string> Args { get; }

    /// <summary>Whether it takes further keys past <see cref="Keys"/>.</summary>
    public bool MoreKeys { get; }

    /// <summary>The Lua sent to Redis: the declarations, then the body.</summary>
    public string Source { get; }

    /// <summary>Runs the script with its keys and arguments in the declared order (and any further arguments after them).</summary>
    public Task<RedisResult> EvaluateAsync(IDatabaseAsync db, RedisKey[] keys, params RedisValue[] args)
    {
        if (keys.Length != Keys.Count && !(MoreKeys && keys.Length > Keys.Count))
            throw new ArgumentException($"script '{Name}' takes {(MoreKeys ? "at least " : "")}{Keys.Count} keys ({string.Join(", ", Keys)}), not {keys.Length}", nameof(keys));
        if (args.Length < Args.Count)
            throw new ArgumentException($"script '{Name}' takes at least {Args.Count} arguments ({string.Join(", ", Args)}), not {args.Length}", nameof(args));
        return db.ScriptEvaluateAsync(Source, keys, args);
    }

    public override string ToString() => Name;
}
