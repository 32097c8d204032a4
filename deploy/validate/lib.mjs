// Shared helpers for the deploy checks: reporting, YAML loading, and the configuration keys the apps read.
import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";

/** Runs named checks; each prints one line, PASS or FAIL with its reasons. The process exits 1 if any failed. */
export class Checks {
  constructor(prefix) {
    this.prefix = prefix;
    this.failed = 0;
    this.passed = 0;
  }

  /** fn gets an `errors` array to push messages into (and may throw); no messages = pass. */
  run(name, fn) {
    const errors = [];
    try {
      fn(errors);
    } catch (e) {
      errors.push(`exception: ${e?.stack ?? e}`);
    }
    const label = `${this.prefix}: ${name}`;
    if (errors.length === 0) {
      this.passed++;
      console.log(`PASS ${label}`);
    } else {
      this.failed++;
      console.log(`FAIL ${label}`);
      for (const e of errors) console.log(`       - ${e}`);
    }
  }

  warn(message) {
    console.log(`WARN ${this.prefix}: ${message}`);
  }

  finish() {
    process.exitCode = this.failed > 0 ? 1 : 0;
  }
}

/** Every document of a multi-document YAML file (null documents skipped). Parse errors throw. */
export function loadYamlDocs(file) {
  const text = fs.readFileSync(file, "utf8");
  const docs = YAML.parseAllDocuments(text, { merge: true, uniqueKeys: true });
  const out = [];
  for (const d of docs) {
    if (d.errors.length) throw new Error(`${file}: ${d.errors.map((e) => e.message).join("; ")}`);
    const js = d.toJS({ maxAliasCount: 1000 });
    if (js != null) out.push(js);
  }
  return out;
}

/** Every .cs file under a folder (bin/ and obj/ left out). */
function csFiles(dir) {
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) { if (entry.name !== "bin" && entry.name !== "obj") out.push(...csFiles(p)); }
    else if (entry.name.endsWith(".cs")) out.push(p);
  }
  return out;
}

/** The body of a type declared in a C# file (from its name to its closing brace), or null. */
function typeBody(text, typeName) {
  const start = new RegExp(`\\b(?:record|class|struct)\\s+${typeName}\\b[^{;]*\\{`).exec(text);
  if (!start) return null;
  let depth = 0, end = start.index + start[0].length - 1;
  for (; end < text.length; end++) {
    if (text[end] === "{") depth++;
    else if (text[end] === "}" && --depth === 0) break;
  }
  return text.slice(start.index, end);
}

/**
 * What one C# source tree declares, for reading options classes: type name → {kind, body} (kind: class, record,
 * struct or enum). A name declared twice (in different namespaces) keeps its first declaration.
 */
function declarations(files) {
  const types = new Map();
  for (const file of files) {
    const text = fs.readFileSync(file, "utf8");
    for (const m of text.matchAll(/\b(class|record|struct|enum)\s+(\w+)/g)) {
      if (types.has(m[2])) continue;
      types.set(m[2], { kind: m[1], file, body: m[1] === "enum" ? "" : typeBody(text, m[2]) ?? "" });
    }
  }
  return types;
}

/** Settable properties of a type body: name → declared type (`public T Name { get; set; }` or `init;`). */
function typedProperties(body) {
  const props = new Map();
  for (const m of body.matchAll(/public\s+(?!const\b|static\b)([\w<>\[\],.? ]+?)\s+(\w+)\s*\{\s*get;\s*(?:set|init);/g))
    props.set(m[2], m[1].trim());
  return props;
}

/**
 * The configuration keys one app binds, read from the options classes in src/ as the app's code registers them:
 * every `AddOptions<T>().BindConfiguration(T.Section)` in its source folders, each T found by name with its `Section`
 * constant ("Farm" for the root, "Farm:Limits" for a section under it) and its properties. A property whose type is a
 * class in src/ (Farm:S3, Farm:Cuda, Farm:TensorRt) is a section of its own with that class's properties; a dictionary
 * (Farm:Models) takes any sub-key. Returns {options, nested, dictionaries, sections}.
 */
function boundKeys(repoRoot, types, appDirs) {
  const bound = new Map(); // type name → section
  for (const dir of appDirs) {
    for (const file of csFiles(path.join(repoRoot, dir))) {
      const text = fs.readFileSync(file, "utf8");
      for (const m of text.matchAll(/AddOptions<([\w.]+)>\(\)\s*\.BindConfiguration\(([\w.]+)\.Section\)/g)) {
        const type = m[1].split(".").at(-1);
        const decl = types.get(type);
        if (!decl) throw new Error(`${path.relative(repoRoot, file)} binds options ${m[1]}, whose declaration is not under src/`);
        const section = /const\s+string\s+Section\s*=\s*"([^"]+)"/.exec(decl.body)?.[1];
        if (!section) throw new Error(`${path.relative(repoRoot, decl.file)}: ${type} has no const string Section`);
        bound.set(type, section);
      }
    }
  }
  const options = new Set(), nested = {}, dictionaries = new Set(), sections = [];
  const propertiesOf = (type) => {
    const props = typedProperties(types.get(type)?.body ?? "");
    if (props.size === 0) throw new Error(`could not read the properties of ${type} under src/`);
    return props;
  };
  for (const [type, section] of bound) {
    const parts = section.split(":");
    if (parts[0] !== "Farm" || parts.length > 2) throw new Error(`${type}: section ${section} is not Farm or Farm:NAME`);
    sections.push(section);
    const props = propertiesOf(type);
    if (parts.length === 2) { options.add(parts[1]); nested[parts[1]] = new Set(props.keys()); continue; }
    for (const [name, declared] of props) {
      options.add(name);
      if (/^(?:I?Dictionary|IReadOnlyDictionary)</.test(declared)) { dictionaries.add(name); continue; }
      const inner = types.get(declared.replace(/\?$/, "").split(".").at(-1));
      if (inner && inner.kind !== "enum") nested[name] = new Set(propertiesOf(declared.replace(/\?$/, "").split(".").at(-1)).keys());
    }
  }
  if (!sections.includes("Farm")) throw new Error(`no options class bound to section Farm under ${appDirs.join(", ")}`);
  return { options, nested, dictionaries, sections };
}

/**
 * The environment variables each app reads (configuration keys with "__" separators). Farm__* keys come from the
 * options classes in src/ that each app binds (boundKeys), so a renamed or removed option fails the deploy checks
 * instead of being silently ignored, and a new options section is known as soon as the app binds it.
 */
export function configKeys(repoRoot) {
  const types = declarations(csFiles(path.join(repoRoot, "src")));
  const common = [/^Logging__/, /^DOTNET_/, /^ASPNETCORE_/, /^REDIS_(ADDRESS|OPTIONS|PASSWORD)$/];
  // src/Telemetry: Farm:Telemetry, which both apps bind through AddFarmTelemetry.
  const coordinator = boundKeys(repoRoot, types, ["src/Coordinator", "src/Telemetry"]);
  const worker = boundKeys(repoRoot, types, ["src/Worker", "src/Telemetry"]);
  return {
    coordinator: {
      ...coordinator,
      // Settings the manifests pass ahead of the code reading them: a warning, not a failure.
      pending: new Set(["ApiKeys"]),
      extra: [/^Kestrel__Endpoints__Grpc__Url$/, ...common],
    },
    worker: {
      ...worker,
      pending: new Set(),
      extra: [/^Urls$/, /^HostOptions__ShutdownTimeout$/, /^CUDA_(CACHE_PATH|DEVICE_ORDER|VISIBLE_DEVICES)$/, ...common],
    },
  };
}

/** Classifies an env var name for an app: "ok", "pending" (known future key) or "unknown". */
export function classifyEnv(keys, name) {
  const m = /^Farm__([A-Za-z0-9]+)(__.*)?$/.exec(name);
  if (m) {
    const [, prop, rest] = m;
    if (keys.options.has(prop)) {
      // Dictionary-valued options (Models) take a sub-key; scalar ones must not have one.
      if (keys.dictionaries?.has(prop)) return rest ? "ok" : "unknown";
      const nested = keys.nested?.[prop];
      if (nested) return rest && nested.has(rest.slice(2)) ? "ok" : "unknown";
      return rest ? "unknown" : "ok";
    }
    return keys.pending.has(prop) ? "pending" : "unknown";
  }
  return keys.extra.some((r) => r.test(name)) ? "ok" : "unknown";
}

/** "00:01:30" / "1.00:00:00" (TimeSpan) → seconds. */
export function timeSpanSeconds(text) {
  const m = /^(?:(\d+)\.)?(\d+):(\d{2}):(\d{2})(?:\.\d+)?$/.exec(String(text).trim());
  if (!m) return NaN;
  return (+(m[1] ?? 0)) * 86400 + +m[2] * 3600 + +m[3] * 60 + +m[4];
}

/** Compose durations ("45s", "1m30s", "2m") → seconds. */
export function composeDurationSeconds(text) {
  const s = String(text).trim();
  const re = /(\d+(?:\.\d+)?)(h|ms|m|s|us)/g;
  let total = 0, consumed = 0, m;
  while ((m = re.exec(s))) {
    consumed += m[0].length;
    total += +m[1] * { h: 3600, m: 60, s: 1, ms: 0.001, us: 1e-6 }[m[2]];
  }
  return consumed === s.length && s.length > 0 ? total : NaN;
}

/** Port of an http(s) URL, with the scheme's default. */
export function urlPort(url) {
  const u = new URL(url);
  return u.port ? +u.port : u.protocol === "https:" ? 443 : 80;
}

/** A Redis memory setting ("2gb", "512mb", "1g", bytes) → bytes; NaN if unreadable. Redis: gb/mb/kb are 1024-based, g/m/k 1000-based. */
export function redisBytes(text) {
  const m = /^(\d+)(b|k|kb|m|mb|g|gb)?$/i.exec(String(text ?? "").trim());
  if (!m) return NaN;
  const unit = { b: 1, k: 1e3, kb: 1024, m: 1e6, mb: 1024 ** 2, g: 1e9, gb: 1024 ** 3 }[(m[2] ?? "b").toLowerCase()];
  return +m[1] * unit;
}

/** A Kubernetes quantity ("5Gi", "512Mi", "2G", "1e9") → bytes; NaN if unreadable. */
export function k8sBytes(q) {
  const m = /^(\d+(?:\.\d+)?(?:e\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(String(q ?? "").trim());
  if (!m) return NaN;
  return +m[1] * (m[2] ? { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4, k: 1e3, M: 1e6, G: 1e9, T: 1e12 }[m[2]] : 1);
}

/** A Compose/Docker memory size ("5g", "512m", "1gb", bytes) → bytes (Docker's units are 1024-based); NaN if unreadable. */
export function composeBytes(s) {
  const m = /^(\d+(?:\.\d+)?)\s*(b|k|kb|m|mb|g|gb)?$/i.exec(String(s ?? "").trim());
  if (!m) return NaN;
  return +m[1] * { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(m[2] ?? "b")[0].toLowerCase()];
}

/**
 * The default of an options property as its class initialises it (`public long X { get; set; } = 256L * 1024 * 1024;`):
 * integer literals and products of them only, anything else throws (so a changed default is read, never guessed).
 */
export function optionDefault(repoRoot, relFile, property) {
  const text = fs.readFileSync(path.join(repoRoot, relFile), "utf8");
  const m = new RegExp(`\\b${property}\\s*\\{\\s*get;\\s*(?:set|init);\\s*\\}\\s*=\\s*([^;]+);`).exec(text);
  if (!m) throw new Error(`${relFile}: no initialised property ${property}`);
  const expr = m[1].trim();
  if (!/^[\d_]+L?(\s*\*\s*[\d_]+L?)*$/.test(expr)) throw new Error(`${relFile}: ${property} = ${expr} is not a product of integer literals`);
  return expr.split("*").reduce((product, f) => product * Number(f.trim().replace(/[_L]/g, "")), 1);
}

/** The coordinator's defaults the Redis sizing depends on (CoordinatorOptions, LimitOptions). */
export function inputLimitDefaults(repoRoot) {
  return {
    maxInputBytesPerJob: optionDefault(repoRoot, "src/Coordinator/CoordinatorOptions.cs", "MaxInputBytesPerJob"),
    maxActiveJobsPerTenant: optionDefault(repoRoot, "src/Coordinator/Security/LimitOptions.cs", "MaxActiveJobsPerTenant"),
  };
}

const mib = (b) => `${Math.round(b / 1024 ** 2)} MiB`;

/**
 * Redis sizing, the same rules for every deployment (deploy/README.md, "Redis sizing"). Init images and masks live in
 * Redis with their job, and Redis runs noeviction: when it is full every write fails, for every job. So:
 *  - maxmemory must be set (without it Redis grows until the kernel or the container limit kills it);
 *  - one tenant's unfinished jobs at the coordinator's caps (MaxActiveJobsPerTenant x MaxInputBytesPerJob) may take
 *    at most a quarter of maxmemory;
 *  - the memory limit must be at least 2.5 x maxmemory: an AOF rewrite forks, copy-on-write can duplicate the whole
 *    dataset under writes (2x), and maxmemory does not count fragmentation, client and AOF buffers;
 *  - the memory request (where there is one) at least maxmemory.
 * Each argument in bytes (undefined: not set); returns error messages.
 */
export function redisSizingErrors({ maxmemory, limit, request, maxInputBytesPerJob, maxActiveJobsPerTenant, where }) {
  const errors = [];
  if (!(maxmemory > 0)) return [`${where.maxmemory}: --maxmemory is not set (or unreadable): Redis would grow until it is killed`];
  const tenant = maxInputBytesPerJob * maxActiveJobsPerTenant;
  if (!(tenant <= maxmemory / 4))
    errors.push(`one tenant's unfinished jobs may hold ${maxActiveJobsPerTenant} x ${mib(maxInputBytesPerJob)} = ${mib(tenant)} of init images in Redis ` +
      `(${where.limits}), more than a quarter of maxmemory ${mib(maxmemory)}: lower Farm__MaxInputBytesPerJob / Farm__Limits__MaxActiveJobsPerTenant or raise maxmemory`);
  if (!(limit >= 2.5 * maxmemory))
    errors.push(`${where.limit} ${limit === undefined ? "is not set" : mib(limit)}: need >= 2.5 x maxmemory = ${mib(2.5 * maxmemory)} (an AOF rewrite's fork can copy the whole dataset; fragmentation and buffers come on top)`);
  if (request !== undefined && !(request >= maxmemory))
    errors.push(`${where.request} ${mib(request)} is below maxmemory ${mib(maxmemory)}`);
  return errors;
}

/**
 * How a Redis container's command sets its password, for the deploy checks: never on the command line (`ps`, the
 * container runtime's records, `docker inspect` show it there); instead a `requirepass` line of configuration that a
 * shell writes to Redis' standard input (`redis-server ... -`) from an environment variable. Returns
 * {errors, variable}: variable is the name of the environment variable that holds the password.
 */
export function redisPasswordSource(commandText) {
  const errors = [];
  if (/--requirepass\b/.test(commandText))
    errors.push("--requirepass on the command line: ps and the container runtime show it; give it as configuration on standard input (redis-server ... - <<EOF / requirepass \"$VAR\" / EOF)");
  const line = /^\s*requirepass\s+"?\$\{?(\w+)\}?"?\s*$/m.exec(commandText);
  if (!line) errors.push("no `requirepass \"$VAR\"` configuration line fed to redis-server");
  else if (!/redis-server[\s\S]*\s-\s*<</.test(commandText))
    errors.push("the requirepass line does not reach redis-server on standard input (`redis-server ... - <<EOF`)");
  return { errors, variable: line?.[1] };
}
