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

/** Property names of a C# options class (`public T Name { get; set; }`). */
export function optionProperties(csFile) {
  const text = fs.readFileSync(csFile, "utf8");
  const names = new Set();
  for (const m of text.matchAll(/public\s+(?!const|static)[\w<>\[\],.? ]+?\s+(\w+)\s*\{\s*get;\s*set;/g)) names.add(m[1]);
  return names;
}

/** Property names of a C# record or class in a file (`public T Name { get; init; }` or `set;`), by its name. */
export function recordProperties(csFile, typeName) {
  const text = fs.readFileSync(csFile, "utf8");
  const start = new RegExp(`\\b(?:record|class)\\s+${typeName}\\b[^{]*\\{`).exec(text);
  if (!start) return new Set();
  // The type's body: up to the brace that closes the one after its name.
  let depth = 0, end = start.index + start[0].length - 1;
  for (; end < text.length; end++) {
    if (text[end] === "{") depth++;
    else if (text[end] === "}" && --depth === 0) break;
  }
  const body = text.slice(start.index, end);
  const names = new Set();
  for (const m of body.matchAll(/public\s+(?!const|static)[\w<>\[\],.? ]+?\s+(\w+)\s*\{\s*get;\s*(?:set|init);/g)) names.add(m[1]);
  return names;
}

/**
 * The environment variables each app reads (configuration keys with "__" separators). Farm__* keys come from the
 * options classes in src/, so a renamed or removed option fails the deploy checks instead of being silently ignored.
 */
export function configKeys(repoRoot) {
  const coord = optionProperties(path.join(repoRoot, "src/Coordinator/CoordinatorOptions.cs"));
  const worker = optionProperties(path.join(repoRoot, "src/Worker/WorkerOptions.cs"));
  if (coord.size === 0 || worker.size === 0) throw new Error("could not read the options classes under src/");
  const common = [/^Logging__/, /^DOTNET_/, /^ASPNETCORE_/, /^REDIS_(ADDRESS|OPTIONS|PASSWORD)$/];
  // Farm:Telemetry, which both apps bind (src/Telemetry).
  const telemetry = recordProperties(path.join(repoRoot, "src/Telemetry/TelemetryOptions.cs"), "TelemetryOptions");
  if (telemetry.size === 0) throw new Error("could not read src/Telemetry/TelemetryOptions.cs");
  coord.add("Telemetry");
  worker.add("Telemetry");
  // Farm:Retention, the coordinator's retention sweep (src/Coordinator/Retention).
  const retention = optionProperties(path.join(repoRoot, "src/Coordinator/Retention/RetentionOptions.cs"));
  if (retention.size === 0) throw new Error("could not read src/Coordinator/Retention/RetentionOptions.cs");
  coord.add("Retention");
  // Farm:S3, the S3 store's settings (src/Coordinator/Storage), a property of the coordinator's options.
  const s3 = optionProperties(path.join(repoRoot, "src/Coordinator/Storage/S3StorageOptions.cs"));
  if (s3.size === 0) throw new Error("could not read src/Coordinator/Storage/S3StorageOptions.cs");
  return {
    coordinator: {
      options: coord,
      nested: { Telemetry: telemetry, Retention: retention, S3: s3 },
      // Settings the manifests pass ahead of the code reading them: a warning, not a failure.
      pending: new Set(["ApiKeys"]),
      extra: [/^Kestrel__Endpoints__Grpc__Url$/, ...common],
    },
    worker: {
      options: worker,
      // Sections bound to the pipeline's provider settings (Farm__Cuda__Tf32, Farm__TensorRt__CacheDirectory).
      nested: {
        Telemetry: telemetry,
        Cuda: recordProperties(path.join(repoRoot, "src/Diffusion/CudaOptions.cs"), "CudaOptions"),
        TensorRt: recordProperties(path.join(repoRoot, "src/Diffusion/TensorRtOptions.cs"), "TensorRtOptions"),
      },
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
      if (prop === "Models") return rest ? "ok" : "unknown";
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
