// Checks rendered Kubernetes manifests (kubectl kustomize output) offline:
//  1. schema: every object against the Kubernetes OpenAPI schemas (kubernetes-models), KEDA's and the Prometheus
//     Operator's CRD schemas (@kubernetes-models/keda, @kubernetes-models/prometheus-operator), with ajv;
//  2. strict fields: unknown or misspelt fields (which the JSON schemas let through) via TypeScript's excess-property
//     check against the same packages' generated types;
//  3. consistency: references, selectors, ports, probes, env, drain timing, security, KEDA wiring.
// Usage: node k8s.mjs REPO_ROOT SECRETS.yaml NAME=RENDERED.yaml [NAME=RENDERED.yaml ...]
import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Checks, loadYamlDocs, configKeys, classifyEnv, timeSpanSeconds, urlPort, redisBytes, k8sBytes, inputLimitDefaults, redisSizingErrors, redisPasswordSource } from "./lib.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const [repoRoot, secretsFile, ...renders] = process.argv.slice(2);
if (!repoRoot || !secretsFile || renders.length === 0) {
  console.error("usage: node k8s.mjs REPO_ROOT SECRETS.yaml NAME=RENDERED.yaml ...");
  process.exit(2);
}
const keys = configKeys(repoRoot);
const inputDefaults = inputLimitDefaults(repoRoot);
const secretsDocs = loadYamlDocs(secretsFile);

// ---------- model classes ----------
function modulePath(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  if (group === "keda.sh") return `@kubernetes-models/keda/keda.sh/${version}/${kind}`;
  if (group === "monitoring.coreos.com") return `@kubernetes-models/prometheus-operator/monitoring.coreos.com/${version}/${kind}`;
  if (group === "") return `kubernetes-models/${version}/${kind}`;
  return `kubernetes-models/${group}/${version}/${kind}`;
}

async function modelClass(apiVersion, kind) {
  try {
    const mod = await import(modulePath(apiVersion, kind));
    return mod[kind] ?? null;
  } catch {
    return null;
  }
}

const id = (o) => `${o.kind}/${o.metadata?.name}`;

// ---------- strict fields (TypeScript excess-property check), all renders in one compile ----------
function strictFieldErrors(objectsByRender) {
  const dir = fs.mkdtempSync(path.join(here, ".strict-"));
  try {
    const lines = [];
    const imports = new Map();
    const spans = []; // {render, obj, from, to}
    let i = 0;
    const body = [];
    for (const [render, objects] of objectsByRender) {
      for (const o of objects) {
        const mod = modulePath(o.apiVersion, o.kind);
        const alias = `I${o.kind}_${imports.size}`;
        if (!imports.has(mod)) imports.set(mod, { alias, kind: o.kind });
        const { alias: a } = imports.get(mod);
        const json = JSON.stringify(o, null, 1).split("\n");
        body.push({ text: [`export const o${i++}: ${a} = ${json[0]}`, ...json.slice(1)], render, o });
      }
    }
    for (const [mod, { alias, kind }] of imports) lines.push(`import type { I${kind} as ${alias} } from "${mod}";`);
    for (const b of body) {
      const from = lines.length + 1;
      lines.push(...b.text);
      lines[lines.length - 1] += ";";
      spans.push({ render: b.render, o: b.o, from, to: lines.length });
    }
    fs.writeFileSync(path.join(dir, "objects.ts"), lines.join("\n") + "\n");
    fs.writeFileSync(path.join(dir, "tsconfig.json"), JSON.stringify({
      compilerOptions: {
        strict: true, noEmit: true, module: "nodenext", moduleResolution: "nodenext", target: "es2022",
        skipLibCheck: true, types: [],
      },
      files: ["objects.ts"],
    }));
    let out = "";
    try {
      execFileSync(process.execPath, [path.join(here, "node_modules/typescript/bin/tsc"), "-p", dir], { encoding: "utf8" });
    } catch (e) {
      out = `${e.stdout ?? ""}${e.stderr ?? ""}`;
      if (!out.trim()) throw e;
    }
    const errors = new Map(); // render → messages
    for (const line of out.split("\n")) {
      const m = /(?:^|[\\/])objects\.ts\((\d+),\d+\): error (TS\d+): (.*)$/.exec(line.trim());
      if (!m) continue;
      const ln = +m[1];
      const span = spans.find((s) => ln >= s.from && ln <= s.to);
      const render = span?.render ?? "*"; // not inside one object (an import): reported for every render
      const where = span ? `${id(span.o)} (line ${ln - span.from + 1} of its JSON)` : `line ${ln}`;
      if (!errors.has(render)) errors.set(render, []);
      errors.get(render).push(`${where}: ${m[2]} ${m[3]}`);
    }
    if (out.trim() && errors.size === 0) throw new Error(`tsc failed:\n${out}`);
    return errors;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ---------- helpers over a render ----------
function podOwners(objects) {
  // Workloads with a pod template.
  return objects.filter((o) => ["Deployment", "StatefulSet", "DaemonSet", "Job"].includes(o.kind) && o.spec?.template);
}
const podLabels = (w) => w.spec.template.metadata?.labels ?? {};
const matchLabels = (sel, labels) => Object.entries(sel ?? {}).every(([k, v]) => labels[k] === v);
function matchSelector(selector, labels) {
  if (!selector) return false;
  if (!matchLabels(selector.matchLabels, labels)) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    if (e.operator === "In" && !(has && e.values.includes(labels[e.key]))) return false;
    if (e.operator === "NotIn" && has && e.values.includes(labels[e.key])) return false;
    if (e.operator === "Exists" && !has) return false;
    if (e.operator === "DoesNotExist" && has) return false;
  }
  return true;
}
const containersOf = (w) => [...(w.spec.template.spec.initContainers ?? []), ...w.spec.template.spec.containers];
function portOf(container, ref) {
  // A probe/service port: a number that is a containerPort, or the name of one.
  return (container.ports ?? []).find((p) => (typeof ref === "number" ? p.containerPort === ref : p.name === ref));
}
const envValue = (c, name) => (c.env ?? []).find((e) => e.name === name);
const appOf = (c) => (/coordinator/.test(c.name) ? "coordinator" : /worker/.test(c.name) ? "worker" : null);

function resolveEnv(objects, c, name) {
  // Literal value of an env var (value, or a ConfigMap key in the render); undefined if not resolvable.
  const e = envValue(c, name);
  if (!e) return undefined;
  if (e.value !== undefined) return e.value;
  const ref = e.valueFrom?.configMapKeyRef;
  if (ref) return objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === ref.name)?.data?.[ref.key];
  return undefined;
}

// ---------- what the apps serve ----------
/**
 * gRPC health services an app answers: "" always (every check), plus each FarmHealth constant its source maps with
 * `o.Services.Map(FarmHealth.X, ...)`. A probe asking another service gets NOT_FOUND, i.e. fails forever.
 */
function healthServices(app) {
  const constants = Object.fromEntries([...fs.readFileSync(path.join(repoRoot, "src/Shared/Health/FarmHealth.cs"), "utf8")
    .matchAll(/const\s+string\s+(\w+)\s*=\s*"([^"]*)"/g)].map((m) => [m[1], m[2]]));
  const dir = path.join(repoRoot, "src", app === "coordinator" ? "Coordinator" : "Worker");
  const served = new Set([""]);
  for (const f of fs.readdirSync(dir).filter((f) => f.endsWith(".cs"))) {
    const text = fs.readFileSync(path.join(dir, f), "utf8");
    for (const m of text.matchAll(/Services\.Map\(FarmHealth\.(\w+)/g)) if (m[1] in constants) served.add(constants[m[1]]);
  }
  return served;
}
const served = { coordinator: healthServices("coordinator"), worker: healthServices("worker") };

/**
 * The consumer group and task-stream names the workers use, read from src/FarmState/FarmKeys.cs (WorkerGroup, and
 * the interpolated strings of TaskStream(model), TaskTag(model) and TaskStream(model, Priority.High/Low)), so KEDA's
 * triggers are checked against the code, not against a copy of its names. A shape this reader does not know throws.
 */
function farmKeys() {
  const file = "src/FarmState/FarmKeys.cs";
  const text = fs.readFileSync(path.join(repoRoot, file), "utf8");
  const read = (what, re) => {
    const m = re.exec(text);
    if (!m) throw new Error(`${file}: cannot read ${what} (changed shape? update farmKeys in deploy/validate/k8s.mjs)`);
    return m[1];
  };
  const group = read("WorkerGroup", /const\s+string\s+WorkerGroup\s*=\s*"([^"]+)"/);
  const templates = {
    tag: read("TaskTag(model)", /static\s+string\s+TaskTag\(string\s+model\)\s*=>\s*\$"([^"]*)"\s*;/),
    normal: read("TaskStream(model)", /static\s+string\s+TaskStream\(string\s+model\)\s*=>\s*\$"([^"]*)"\s*;/),
    high: read("TaskStream(model, Priority.High)", /Priority\.High\s*=>\s*\$"([^"]*)"/),
    low: read("TaskStream(model, Priority.Low)", /Priority\.Low\s*=>\s*\$"([^"]*)"/),
  };
  // A C# interpolated string: {{ and }} are braces, {model} the model, {TaskTag(model)} / {TaskStream(model)} those.
  const expand = (template, model) => template.replace(/\{\{|\}\}|\{([^{}]+)\}/g, (all, expr) => {
    if (all === "{{") return "{";
    if (all === "}}") return "}";
    if (expr === "model") return model;
    if (expr === "TaskTag(model)") return expand(templates.tag, model);
    if (expr === "TaskStream(model)") return expand(templates.normal, model);
    throw new Error(`${file}: cannot expand {${expr}} in $"${template}"`);
  });
  return { group, streams: (model) => [expand(templates.high, model), expand(templates.normal, model), expand(templates.low, model)] };
}
const taskKeys = farmKeys();

// ---------- the checks ----------
const checks = new Checks("k8s");
const renderObjects = new Map();
for (const spec of renders) {
  const [name, file] = spec.split("=");
  renderObjects.set(name, loadYamlDocs(file));
}

checks.run("secrets kustomization renders the Secrets the manifests use", (errors) => {
  for (const s of ["renderfarm-redis", "renderfarm-api-keys"])
    if (!secretsDocs.some((o) => o.kind === "Secret" && o.metadata.name === s)) errors.push(`no Secret ${s}`);
});

const strict = strictFieldErrors([...renderObjects, ["secrets", secretsDocs]]);

for (const [render, rendered] of renderObjects) {
  const objects = [...rendered, ...secretsDocs];
  const prefix = `[${render}]`;

  await (async () => {
    const errors = [];
    for (const o of objects) {
      const cls = await modelClass(o.apiVersion, o.kind);
      if (!cls) { errors.push(`${id(o)}: unknown apiVersion/kind ${o.apiVersion} ${o.kind}`); continue; }
      try {
        new cls(o).validate();
      } catch (e) {
        const details = (e.errors ?? []).map((x) => `${x.instancePath} ${x.message}`).join("; ");
        errors.push(`${id(o)}: ${details || e.message}`);
      }
    }
    checks.run(`${prefix} ${objects.length} objects valid against the Kubernetes/KEDA schemas`, (errs) => errs.push(...errors));
  })();

  checks.run(`${prefix} no unknown fields (strict)`, (errors) => errors.push(...(strict.get(render) ?? []), ...(strict.get("*") ?? [])));

  checks.run(`${prefix} names unique, one namespace`, (errors) => {
    const seen = new Set();
    const namespaces = new Set();
    for (const o of rendered) {
      const k = `${o.apiVersion} ${o.kind} ${o.metadata?.namespace ?? ""}/${o.metadata?.name}`;
      if (seen.has(k)) errors.push(`duplicate ${k}`);
      seen.add(k);
      if (o.kind !== "Namespace") namespaces.add(o.metadata?.namespace);
    }
    if (namespaces.size !== 1 || namespaces.has(undefined)) errors.push(`namespaces: ${[...namespaces].join(", ")}`);
    const ns = [...namespaces][0];
    if (!rendered.some((o) => o.kind === "Namespace" && o.metadata.name === ns)) errors.push(`no Namespace ${ns}`);
    for (const s of secretsDocs) if (s.metadata.namespace !== ns) errors.push(`Secret ${s.metadata.name} is in ${s.metadata.namespace}, not ${ns}`);
  });

  const workloads = podOwners(rendered);
  const byName = (kind, name) => objects.find((o) => o.kind === kind && o.metadata.name === name);

  checks.run(`${prefix} Secret, ConfigMap, PVC and key references resolve`, (errors) => {
    for (const w of workloads) {
      const spec = w.spec.template.spec;
      const claimTemplates = new Set((w.spec.volumeClaimTemplates ?? []).map((t) => t.metadata.name));
      for (const c of containersOf(w)) {
        for (const e of c.env ?? []) {
          for (const [kind, ref] of [["Secret", e.valueFrom?.secretKeyRef], ["ConfigMap", e.valueFrom?.configMapKeyRef]]) {
            if (!ref) continue;
            const target = byName(kind, ref.name);
            if (!target) { if (!ref.optional) errors.push(`${id(w)} ${c.name} env ${e.name}: no ${kind} ${ref.name}`); continue; }
            const data = { ...(target.data ?? {}), ...(target.stringData ?? {}) };
            if (!Object.hasOwn(data, ref.key) && !ref.optional) errors.push(`${id(w)} ${c.name} env ${e.name}: ${kind} ${ref.name} has no key ${ref.key}`);
          }
        }
        for (const src of c.envFrom ?? []) {
          const ref = src.secretRef ?? src.configMapRef;
          const kind = src.secretRef ? "Secret" : "ConfigMap";
          if (!byName(kind, ref.name) && !ref.optional) errors.push(`${id(w)} ${c.name} envFrom: no ${kind} ${ref.name}`);
        }
        const volumes = new Set([...(spec.volumes ?? []).map((v) => v.name), ...claimTemplates]);
        for (const m of c.volumeMounts ?? []) if (!volumes.has(m.name)) errors.push(`${id(w)} ${c.name} mounts unknown volume ${m.name}`);
      }
      for (const v of spec.volumes ?? []) {
        if (v.persistentVolumeClaim && !byName("PersistentVolumeClaim", v.persistentVolumeClaim.claimName))
          errors.push(`${id(w)} volume ${v.name}: no PVC ${v.persistentVolumeClaim.claimName}`);
        if (v.secret && !byName("Secret", v.secret.secretName) && !v.secret.optional) errors.push(`${id(w)} volume ${v.name}: no Secret ${v.secret.secretName}`);
        if (v.configMap && !byName("ConfigMap", v.configMap.name) && !v.configMap.optional) errors.push(`${id(w)} volume ${v.name}: no ConfigMap ${v.configMap.name}`);
      }
      if (w.kind === "StatefulSet" && !byName("Service", w.spec.serviceName)) errors.push(`${id(w)}: no governing Service ${w.spec.serviceName}`);
    }
  });

  checks.run(`${prefix} selectors match their pods; Services' ports exist on them`, (errors) => {
    for (const w of workloads)
      if (!matchSelector(w.spec.selector, podLabels(w))) errors.push(`${id(w)}: selector does not match its own template labels`);
    for (const svc of rendered.filter((o) => o.kind === "Service")) {
      const pods = workloads.filter((w) => matchLabels(svc.spec.selector, podLabels(w)));
      if (pods.length === 0) { errors.push(`${id(svc)}: selector matches no pods`); continue; }
      for (const p of svc.spec.ports) {
        const target = p.targetPort ?? p.port;
        for (const w of pods)
          if (!w.spec.template.spec.containers.some((c) => portOf(c, target))) errors.push(`${id(svc)} port ${p.name ?? p.port}: ${id(w)} has no container port ${target}`);
      }
    }
    for (const pdb of rendered.filter((o) => o.kind === "PodDisruptionBudget"))
      if (!workloads.some((w) => matchSelector(pdb.spec.selector, podLabels(w)))) errors.push(`${id(pdb)}: selects no pods`);
    for (const np of rendered.filter((o) => o.kind === "NetworkPolicy"))
      if (!workloads.some((w) => matchSelector(np.spec.podSelector, podLabels(w)))) errors.push(`${id(np)}: selects no pods`);
  });

  checks.run(`${prefix} PodDisruptionBudgets: every farm workload has one, and unready pods may always be evicted`, (errors) => {
    // Workers and coordinators are Ready only when their dependencies are (models warm, Redis, a coordinator, not
    // quarantined): under the default IfHealthyBudget one unready pod spends the budget and blocks every node drain.
    const pdbs = rendered.filter((o) => o.kind === "PodDisruptionBudget");
    for (const pdb of pdbs)
      if (pdb.spec.unhealthyPodEvictionPolicy !== "AlwaysAllow")
        errors.push(`${id(pdb)}: unhealthyPodEvictionPolicy is ${pdb.spec.unhealthyPodEvictionPolicy ?? "unset (IfHealthyBudget)"}, not AlwaysAllow: one unready pod would block every drain`);
    for (const name of ["coordinator", "worker"]) {
      const w = byName("Deployment", name);
      if (w && !pdbs.some((pdb) => matchSelector(pdb.spec.selector, podLabels(w)))) errors.push(`no PodDisruptionBudget selects ${id(w)}`);
    }
  });

  checks.run(`${prefix} every container has probes on ports it declares`, (errors) => {
    for (const w of workloads) {
      for (const c of w.spec.template.spec.containers) {
        if (!c.readinessProbe || !c.livenessProbe) errors.push(`${id(w)} ${c.name}: readiness and liveness probes required`);
        for (const kind of ["startupProbe", "readinessProbe", "livenessProbe"]) {
          const p = c[kind];
          if (!p) continue;
          const port = p.httpGet?.port ?? p.tcpSocket?.port ?? p.grpc?.port;
          if (port !== undefined && !portOf(c, port)) errors.push(`${id(w)} ${c.name} ${kind}: port ${port} is not a container port`);
          const app = appOf(c);
          if (p.grpc && app && !served[app].has(p.grpc.service ?? ""))
            errors.push(`${id(w)} ${c.name} ${kind}: the ${app} serves no gRPC health service "${p.grpc.service}" (it maps ${[...served[app]].map((x) => `"${x}"`).join(", ")}: src/${app === "coordinator" ? "Coordinator" : "Worker"})`);
        }
      }
    }
  });

  checks.run(`${prefix} env: only keys the apps read; $(VAR) defined before use`, (errors) => {
    for (const w of workloads) {
      for (const c of w.spec.template.spec.containers) {
        const app = appOf(c);
        const defined = new Set();
        for (const e of c.env ?? []) {
          for (const m of String(e.value ?? "").matchAll(/\$\((\w+)\)/g))
            if (!defined.has(m[1])) errors.push(`${id(w)} ${c.name} env ${e.name}: $(${m[1]}) is not defined above it`);
          defined.add(e.name);
          if (!app) continue;
          const kind = classifyEnv(keys[app], e.name);
          if (kind === "unknown") errors.push(`${id(w)} ${c.name}: the ${app} reads no setting ${e.name}`);
          if (kind === "pending") checks.warn(`${prefix} ${id(w)} ${c.name}: ${e.name} is passed but not read by the ${app} yet`);
        }
      }
    }
  });

  const coordinator = byName("Deployment", "coordinator");
  const worker = byName("Deployment", "worker");
  const cc = coordinator?.spec.template.spec.containers.find((c) => c.name === "coordinator");
  const wc = worker?.spec.template.spec.containers.find((c) => c.name === "worker");

  checks.run(`${prefix} coordinator: >=2 replicas, gRPC probes, h2c Service, listen URL = container port`, (errors) => {
    if (!cc) return errors.push("no coordinator Deployment/container");
    if (!(coordinator.spec.replicas >= 2)) errors.push(`replicas ${coordinator.spec.replicas} < 2`);
    // Readiness = service "" (Redis included); startup and liveness must not depend on Redis: a coordinator started
    // during a Redis outage would be killed into CrashLoopBackOff, and an outage would restart every replica at once.
    if (cc.readinessProbe?.grpc?.port === undefined) errors.push("readiness probe is not a native grpc probe");
    else if ((cc.readinessProbe.grpc.service ?? "") !== "") errors.push(`readiness probe asks service "${cc.readinessProbe.grpc.service}", expected "" (Redis included)`);
    for (const kind of ["startupProbe", "livenessProbe"]) {
      const p = cc[kind];
      if (!p) { if (kind === "livenessProbe") errors.push("no livenessProbe"); continue; }
      if (p.grpc) {
        if ((p.grpc.service ?? "") !== "liveness")
          errors.push(`${kind} asks gRPC health service "${p.grpc.service ?? ""}", which includes the Redis check: use service "liveness" (or tcpSocket)`);
      } else if (!p.tcpSocket) errors.push(`${kind}: use a grpc probe with service "liveness" or a tcpSocket probe, never one that depends on Redis`);
    }
    const listen = resolveEnv(objects, cc, "Kestrel__Endpoints__Grpc__Url");
    if (!listen) errors.push("Kestrel__Endpoints__Grpc__Url not set");
    else if (!portOf(cc, urlPort(listen))) errors.push(`listens on ${listen} but declares no containerPort ${urlPort(listen)}`);
    const svc = byName("Service", "coordinator");
    if (!svc) errors.push("no Service coordinator");
    else if (!svc.spec.ports.every((p) => p.appProtocol === "kubernetes.io/h2c")) errors.push("Service ports need appProtocol kubernetes.io/h2c");
    const storage = resolveEnv(objects, cc, "Farm__Storage");
    const mount = (cc.volumeMounts ?? []).find((m) => storage && (storage === m.mountPath || storage.startsWith(m.mountPath + "/")));
    if (storage?.startsWith("s3://")) {
      // A bucket: the coordinator needs its credentials (from a Secret, never a literal) and no results volume.
      if (!/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/|$)/.test(storage)) errors.push(`Farm__Storage ${storage} is not s3://BUCKET/PREFIX`);
      for (const key of ["Farm__S3__AccessKey", "Farm__S3__SecretKey"]) {
        const e = (cc.env ?? []).find((v) => v.name === key);
        if (!e?.valueFrom?.secretKeyRef) errors.push(`${key} must come from a Secret (secretKeyRef)`);
      }
      if ((coordinator.spec.template.spec.volumes ?? []).some((v) => v.persistentVolumeClaim?.claimName === "renderfarm-results"))
        errors.push("results are in a bucket, but the coordinator still mounts the results volume");
      if (byName("PersistentVolumeClaim", "renderfarm-results")) errors.push("results are in a bucket, but the results PVC is still deployed");
    } else if (!mount) errors.push(`Farm__Storage ${storage} is not on a mounted volume`);
    else {
      const vol = coordinator.spec.template.spec.volumes.find((v) => v.name === mount.name);
      const pvc = vol?.persistentVolumeClaim && byName("PersistentVolumeClaim", vol.persistentVolumeClaim.claimName);
      if (!pvc?.spec.accessModes?.includes("ReadWriteMany")) errors.push("results volume must be a ReadWriteMany PVC (shared by the replicas)");
    }
  });

  checks.run(`${prefix} worker: coordinator URL is the Service, models on a read-only volume, TensorRT cache writable, gRPC probes (ready / liveness) on the Urls port`, (errors) => {
    if (!wc) return errors.push("no worker Deployment/container");
    if (worker.spec.replicas !== undefined) errors.push("worker sets replicas: KEDA owns the count (re-applying would reset it)");
    const url = resolveEnv(objects, wc, "Farm__Coordinator");
    if (!url) errors.push("Farm__Coordinator not set");
    else {
      const u = new URL(url);
      const svc = byName("Service", u.hostname.split(".")[0]);
      if (!svc) errors.push(`Farm__Coordinator ${url}: no Service ${u.hostname}`);
      else if (!svc.spec.ports.some((p) => p.port === urlPort(url))) errors.push(`Farm__Coordinator ${url}: Service has no port ${urlPort(url)}`);
    }
    const models = (wc.env ?? []).filter((e) => e.name.startsWith("Farm__Models__"));
    if (models.length === 0) errors.push("no Farm__Models__<name>");
    for (const m of models) {
      const mount = (wc.volumeMounts ?? []).find((v) => m.value === v.mountPath || m.value?.startsWith(v.mountPath + "/"));
      if (!mount) errors.push(`${m.name}=${m.value} is not on a mounted volume`);
      else if (!mount.readOnly) errors.push(`models volume ${mount.name} should be mounted readOnly`);
    }
    // TensorRT's engine cache must be writable and on a volume (else every pod builds its engines again, minutes).
    const cache = resolveEnv(objects, wc, "Farm__TensorRt__CacheDirectory");
    if (cache) {
      const mount = (wc.volumeMounts ?? []).filter((v) => cache === v.mountPath || cache.startsWith(v.mountPath + "/"))
        .sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
      const volume = mount && (worker.spec.template.spec.volumes ?? []).find((v) => v.name === mount.name);
      if (!mount) errors.push(`Farm__TensorRt__CacheDirectory ${cache} is not on a mounted volume`);
      else if (mount.readOnly || volume?.persistentVolumeClaim?.readOnly) errors.push(`Farm__TensorRt__CacheDirectory ${cache} is on a read-only mount (${mount.mountPath})`);
      else if (volume?.emptyDir) errors.push(`Farm__TensorRt__CacheDirectory ${cache} is on an emptyDir: engines would be rebuilt in every pod`);
    }
    // The worker's health is gRPC (service "" = ready, "liveness" = its own progress, src/Shared/Health/FarmHealth.cs):
    // an HTTP probe would see neither, and a readiness check as liveness would restart every worker in a Redis outage.
    const urls = resolveEnv(objects, wc, "Urls");
    if (!urls) errors.push("Urls not set");
    const wanted = { startupProbe: "liveness", readinessProbe: "", livenessProbe: "liveness" };
    for (const [kind, service] of Object.entries(wanted)) {
      const grpc = wc[kind]?.grpc;
      if (!grpc) { errors.push(`${kind} is not a native grpc probe`); continue; }
      if ((grpc.service ?? "") !== service) errors.push(`${kind} asks service "${grpc.service ?? ""}", expected "${service}"`);
      if (urls && grpc.port !== urlPort(urls)) errors.push(`${kind} port ${grpc.port} is not the Urls port (${urls})`);
    }
    if (resolveEnv(objects, wc, "Farm__WorkerId") === undefined && envValue(wc, "Farm__WorkerId")?.valueFrom?.fieldRef?.fieldPath !== "metadata.name")
      errors.push("Farm__WorkerId should come from metadata.name");
  });

  checks.run(`${prefix} worker drain: terminationGracePeriodSeconds >= HostOptions__ShutdownTimeout + 10 s`, (errors) => {
    if (!wc) return errors.push("no worker");
    const timeout = timeSpanSeconds(resolveEnv(objects, wc, "HostOptions__ShutdownTimeout") ?? "00:00:30");
    const grace = worker.spec.template.spec.terminationGracePeriodSeconds ?? 30;
    if (!Number.isFinite(timeout)) errors.push("HostOptions__ShutdownTimeout is not a TimeSpan");
    else if (grace < timeout + 10) errors.push(`grace ${grace}s < shutdown timeout ${timeout}s + 10s`);
  });

  checks.run(`${prefix} pods: non-root, read-only root fs, no privilege escalation, caps dropped, resources set`, (errors) => {
    for (const w of workloads) {
      const pod = w.spec.template.spec;
      if (pod.automountServiceAccountToken !== false) errors.push(`${id(w)}: automountServiceAccountToken should be false`);
      // Volumes a non-root pod writes: fsGroup gives them its group where the storage class honours it, and
      // OnRootMismatch keeps the kubelet from re-chowning every file at every start (a models volume: tens of GB).
      const claims = (pod.volumes ?? []).some((v) => v.persistentVolumeClaim) || (w.spec.volumeClaimTemplates ?? []).length > 0;
      if (claims) {
        const psc = pod.securityContext ?? {};
        if (psc.fsGroup === undefined) errors.push(`${id(w)}: mounts a PersistentVolumeClaim but sets no fsGroup`);
        else {
          if (psc.fsGroupChangePolicy !== "OnRootMismatch")
            errors.push(`${id(w)}: fsGroupChangePolicy is ${psc.fsGroupChangePolicy ?? "unset (Always: every file re-chowned at every start)"}, not OnRootMismatch`);
          if (psc.runAsGroup !== undefined && psc.fsGroup !== psc.runAsGroup)
            errors.push(`${id(w)}: fsGroup ${psc.fsGroup} is not its runAsGroup ${psc.runAsGroup}: its volumes would not be its own group's`);
        }
      }
      for (const c of pod.containers) {
        const sc = c.securityContext ?? {};
        const nonRoot = sc.runAsNonRoot ?? pod.securityContext?.runAsNonRoot;
        if (nonRoot !== true) errors.push(`${id(w)} ${c.name}: runAsNonRoot`);
        const uid = sc.runAsUser ?? pod.securityContext?.runAsUser;
        if (uid === 0) errors.push(`${id(w)} ${c.name}: runAsUser 0`);
        if (sc.readOnlyRootFilesystem !== true) errors.push(`${id(w)} ${c.name}: readOnlyRootFilesystem`);
        if (sc.allowPrivilegeEscalation !== false) errors.push(`${id(w)} ${c.name}: allowPrivilegeEscalation`);
        if (!(sc.capabilities?.drop ?? []).includes("ALL")) errors.push(`${id(w)} ${c.name}: capabilities.drop ALL`);
        if (!c.resources?.requests?.cpu || !c.resources?.requests?.memory) errors.push(`${id(w)} ${c.name}: cpu/memory requests`);
        if (!c.resources?.limits?.memory) errors.push(`${id(w)} ${c.name}: memory limit`);
        if (!c.image || !/:[^/:]+$/.test(c.image)) errors.push(`${id(w)} ${c.name}: image ${c.image} has no tag`);
      }
    }
  });

  const redis = byName("StatefulSet", "redis");
  checks.run(`${prefix} Redis: >= 7, AOF on a PVC, noeviction, password from the Secret on stdin, not the command line (or external Redis)`, (errors) => {
    if (!redis) {
      // External Redis: nothing in-cluster may still point at a "redis" Service.
      const addr = resolveEnv(objects, wc, "REDIS_ADDRESS");
      if (!addr || /^redis[.:]/.test(addr)) errors.push(`no in-cluster Redis but REDIS_ADDRESS is ${addr}`);
      return;
    }
    const c = redis.spec.template.spec.containers[0];
    const tag = /:(\d+)/.exec(c.image)?.[1];
    if (!(+tag >= 7)) errors.push(`image ${c.image}: need Redis >= 7 (KEDA lag trigger)`);
    const args = [...(c.command ?? []), ...(c.args ?? [])].join(" ");
    if (!/--appendonly yes/.test(args)) errors.push("--appendonly yes missing");
    if (!/--maxmemory-policy noeviction/.test(args)) errors.push("--maxmemory-policy noeviction missing");
    // The password: configuration on Redis' standard input from an env var that comes from the Secret.
    const password = redisPasswordSource(args);
    errors.push(...password.errors);
    if (password.variable) {
      const ref = envValue(c, password.variable)?.valueFrom?.secretKeyRef;
      if (!ref || ref.name !== "renderfarm-redis" || ref.key !== "password")
        errors.push(`requirepass reads $${password.variable}, which is not the renderfarm-redis Secret's key password`);
    }
    const dataMount = c.volumeMounts?.find((m) => m.mountPath === "/data");
    if (!dataMount || !redis.spec.volumeClaimTemplates?.some((t) => t.metadata.name === dataMount.name)) errors.push("/data is not on a volumeClaimTemplate");
  });

  checks.run(`${prefix} Redis sizing: maxmemory vs the memory limit and request, and vs one tenant's init images at the coordinator's caps`, (errors) => {
    if (!redis) return; // a managed Redis: sized by its provider (deploy/README.md, "Redis sizing")
    const c = redis.spec.template.spec.containers[0];
    const text = [...(c.command ?? []), ...(c.args ?? [])].join(" ");
    const setting = /--maxmemory\s+(\S+)/.exec(text)?.[1];
    const fromEnv = (name, fallback) => {
      const v = cc && resolveEnv(objects, cc, name);
      if (v === undefined) return fallback;
      if (!/^\d+$/.test(String(v).trim())) { errors.push(`coordinator ${name} "${v}" is not an integer`); return NaN; }
      return +v;
    };
    const limit = c.resources?.limits?.memory, request = c.resources?.requests?.memory;
    errors.push(...redisSizingErrors({
      maxmemory: setting === undefined ? undefined : redisBytes(setting),
      limit: limit === undefined ? undefined : k8sBytes(limit),
      request: request === undefined ? undefined : k8sBytes(request),
      maxInputBytesPerJob: fromEnv("Farm__MaxInputBytesPerJob", inputDefaults.maxInputBytesPerJob),
      maxActiveJobsPerTenant: fromEnv("Farm__Limits__MaxActiveJobsPerTenant", inputDefaults.maxActiveJobsPerTenant),
      where: {
        maxmemory: `${id(redis)}`, limit: `${id(redis)} limits.memory`, request: `${id(redis)} requests.memory`,
        limits: "coordinator Farm__Limits__MaxActiveJobsPerTenant x Farm__MaxInputBytesPerJob, or the code's defaults",
      },
    }));
  });

  checks.run(`${prefix} NetworkPolicy: only coordinator, workers (and KEDA) reach Redis; coordinator open on its port`, (errors) => {
    const pods = Object.fromEntries(workloads.map((w) => [w.metadata.name, podLabels(w)]));
    const policiesFor = (name) => rendered.filter((o) => o.kind === "NetworkPolicy" && matchSelector(o.spec.podSelector, pods[name] ?? {}));
    const allows = (policies, fromName, port) => policies.some((np) => (np.spec.ingress ?? []).some((rule) =>
      (!rule.ports || rule.ports.some((p) => p.port === port)) &&
      (!rule.from || rule.from.some((f) => f.podSelector && !f.namespaceSelector && matchSelector(f.podSelector, pods[fromName] ?? {})))));
    for (const name of ["coordinator", "worker", ...(redis ? ["redis"] : [])])
      if (policiesFor(name).length === 0) errors.push(`no NetworkPolicy selects ${name}`);
    if (redis) {
      const rp = policiesFor("redis");
      for (const ok of ["coordinator", "worker"]) if (!allows(rp, ok, 6379)) errors.push(`${ok} cannot reach Redis`);
      for (const np of rp) for (const rule of np.spec.ingress ?? []) if (!rule.from) errors.push(`${id(np)}: an ingress rule without "from" opens Redis to everyone`);
      // KEDA's operator reads the streams' lag from Redis: some peer must admit it, as pods of a namespace (both
      // selectors in one peer: a namespaceSelector alone would admit a whole namespace such as kube-system).
      if (objects.some((o) => o.kind === "ScaledObject")) {
        const keda = rp.flatMap((np) => (np.spec.ingress ?? []).filter((r) => !r.ports || r.ports.some((p) => p.port === 6379)).flatMap((r) => r.from ?? []))
          .filter((f) => f.namespaceSelector && Object.values({ ...f.podSelector?.matchLabels }).some((v) => /keda-operator/.test(v)));
        if (keda.length === 0) errors.push("no peer admits KEDA's operator (a namespaceSelector with a podSelector on its keda-operator label) to Redis on 6379: KEDA could not read the lag, and workers would never scale up");
        for (const f of rp.flatMap((np) => (np.spec.ingress ?? []).flatMap((r) => r.from ?? [])))
          if (f.namespaceSelector && !f.podSelector) errors.push(`a peer admits every pod of namespaces ${JSON.stringify(f.namespaceSelector)} to Redis: add the operator's podSelector`);
      }
    }
    if (!policiesFor("coordinator").some((np) => (np.spec.ingress ?? []).some((r) => !r.from && r.ports?.some((p) => p.port === 5000))))
      errors.push("coordinator port 5000 not open to clients");
  });

  checks.run(`${prefix} KEDA: ScaledObject scales the worker Deployment on lag of tasks:<model> for every model it serves`, (errors) => {
    const so = objects.find((o) => o.kind === "ScaledObject");
    if (!so) return errors.push("no ScaledObject");
    const ref = so.spec.scaleTargetRef;
    const target = byName(ref.kind ?? "Deployment", ref.name);
    if (!target) return errors.push(`scaleTargetRef ${ref.kind ?? "Deployment"}/${ref.name} not in the render`);
    if (so.spec.minReplicaCount !== 0) errors.push("minReplicaCount should be 0 (scale to zero when idle)");
    if (!(so.spec.maxReplicaCount >= 1)) errors.push("maxReplicaCount missing");
    const tc = target.spec.template.spec.containers[0];
    const models = (tc.env ?? []).filter((e) => e.name.startsWith("Farm__Models__")).map((e) => e.name.slice("Farm__Models__".length));
    const lagStreams = new Set();
    for (const t of so.spec.triggers) {
      if (t.type !== "redis-streams") continue;
      const md = t.metadata ?? {};
      const name = t.name ?? md.stream;
      if (md.consumerGroup !== taskKeys.group) errors.push(`${name}: consumerGroup must be "${taskKeys.group}" (FarmKeys.WorkerGroup)`);
      if (!models.some((m) => taskKeys.streams(m).includes(md.stream)))
        errors.push(`${name}: stream ${md.stream} is none of the task streams (FarmKeys.TaskStreams) of the models the worker serves: ${models.flatMap(taskKeys.streams).join(", ")}`);
      if (md.lagCount !== undefined) {
        lagStreams.add(md.stream);
        if (md.activationLagCount === undefined) errors.push(`${name}: lagCount needs activationLagCount`);
      } else if (md.pendingEntriesCount === undefined) errors.push(`${name}: neither lagCount nor pendingEntriesCount`);
      for (const n of ["lagCount", "activationLagCount", "pendingEntriesCount"])
        if (md[n] !== undefined && !/^\d+$/.test(md[n])) errors.push(`${name}: ${n} "${md[n]}" is not an integer string`);
      if (md.addressFromEnv) {
        const addr = resolveEnv(objects, tc, md.addressFromEnv);
        if (addr === undefined) errors.push(`${name}: addressFromEnv ${md.addressFromEnv} does not resolve on the target's container`);
        else if (redis) {
          const ns = redis.metadata.namespace;
          if (!new RegExp(`^redis\\.${ns}\\.svc(\\.[\\w.-]+)?:6379$`).test(addr))
            errors.push(`${name}: address ${addr} is not redis.${ns}.svc...:6379 (KEDA's operator resolves it from its own namespace)`);
        }
      } else if (!md.address && !md.host) errors.push(`${name}: no address`);
      const auth = t.authenticationRef && byName(t.authenticationRef.kind ?? "TriggerAuthentication", t.authenticationRef.name);
      if (!auth) errors.push(`${name}: authenticationRef ${t.authenticationRef?.name} not in the render`);
      else for (const s of auth.spec.secretTargetRef ?? []) {
        const secret = byName("Secret", s.name);
        if (!secret || !Object.hasOwn(secret.data ?? {}, s.key)) errors.push(`${id(auth)}: Secret ${s.name} key ${s.key} missing`);
      }
    }
    for (const m of models)
      for (const stream of taskKeys.streams(m))
        if (!lagStreams.has(stream)) errors.push(`model ${m}: no lagCount trigger on ${stream} (each priority has its own stream)`);
  });

  checks.run(`${prefix} KEDA: every redis trigger connects as the workers do (same address, TLS, auth)`, (errors) => {
    // One Redis, one way in: a setting patched onto some triggers only (TLS for a managed Redis, say) leaves the
    // others failing, and KEDA then scales on whichever streams it can still read.
    const so = objects.find((o) => o.kind === "ScaledObject");
    const tc = so && byName(so.spec.scaleTargetRef.kind ?? "Deployment", so.spec.scaleTargetRef.name)?.spec.template.spec.containers[0];
    const triggers = (so?.spec.triggers ?? []).filter((t) => /^redis/.test(t.type));
    if (!tc || triggers.length === 0) return;
    const connection = (t) => {
      const md = t.metadata ?? {};
      const picked = Object.fromEntries(Object.entries(md).filter(([k]) =>
        /^(address|host|port|enableTLS|unsafeSsl|databaseIndex|username|password)(FromEnv)?$/.test(k) || k === "addresses" || k === "hosts"));
      if (picked.enableTLS === "false") delete picked.enableTLS; // the default
      return JSON.stringify({ ...picked, auth: `${t.authenticationRef?.kind ?? "TriggerAuthentication"}/${t.authenticationRef?.name ?? ""}` });
    };
    const first = connection(triggers[0]);
    for (const t of triggers.slice(1))
      if (connection(t) !== first) errors.push(`${t.name ?? t.metadata?.stream}: ${connection(t)} differs from ${triggers[0].name}: ${first}`);
    // TLS as the workers connect: Farm__Redis with its $(VARS) expanded from the container's env.
    let redisConn = resolveEnv(objects, tc, "Farm__Redis") ?? "";
    for (let i = 0; i < 3; i++) redisConn = redisConn.replace(/\$\((\w+)\)/g, (all, n) => resolveEnv(objects, tc, n) ?? "");
    const appTls = redisConn.split(",").some((p) => /^ssl\s*=\s*true$/i.test(p.trim()));
    for (const t of triggers)
      if ((t.metadata?.enableTLS === "true") !== appTls)
        errors.push(`${t.name}: enableTLS ${t.metadata?.enableTLS ?? "unset"} but the workers connect ${appTls ? "with" : "without"} TLS (Farm__Redis ${redisConn.replace(/password=[^,]*/, "password=***")})`);
  });

  checks.run(`${prefix} metrics: monitors reach Farm__Telemetry__PrometheusPort; no probe, listen URL or other Service port uses it`, (errors) => {
    // /metrics is served only on connections to the metrics port (Farm__Telemetry__PrometheusPort), and nothing else
    // is served there (src/Telemetry, UseFarmMetrics): a monitor on any other port scrapes 404s or gRPC, and a probe
    // on the metrics port gets a 404 for every request, whatever the app's health.
    const metricsPort = (c) => {
      const v = resolveEnv(objects, c, "Farm__Telemetry__PrometheusPort");
      return v === undefined || +v === 0 ? undefined : +v;
    };
    const containerPortNumber = (c, ref) => portOf(c, ref)?.containerPort;
    for (const w of workloads) {
      for (const c of w.spec.template.spec.containers) {
        const mp = metricsPort(c);
        if (mp === undefined) continue;
        for (const kind of ["startupProbe", "readinessProbe", "livenessProbe"]) {
          const p = c[kind];
          const ref = p?.httpGet?.port ?? p?.tcpSocket?.port ?? p?.grpc?.port;
          if (ref !== undefined && containerPortNumber(c, ref) === mp)
            errors.push(`${id(w)} ${c.name} ${kind}: port ${ref} is the metrics port ${mp} (it serves only /metrics)`);
        }
        for (const name of ["Kestrel__Endpoints__Grpc__Url", "Urls"]) {
          const url = resolveEnv(objects, c, name);
          if (url && String(url).split(";").some((u) => { try { return urlPort(u.trim()) === mp; } catch { return false; } }))
            errors.push(`${id(w)} ${c.name}: ${name} ${url} listens on the metrics port ${mp}`);
        }
      }
    }
    // Where a pod-side port reference leads: the container port (number) on the pods it names, and their metrics port.
    const targets = (pods, ref) => pods.flatMap((w) => w.spec.template.spec.containers
      .filter((c) => portOf(c, ref)).map((c) => ({ w, c, port: portOf(c, ref).containerPort, metrics: metricsPort(c) })));
    const describe = (t) => `${id(t.w)} ${t.c.name} container port ${t.port}`;
    for (const pm of rendered.filter((o) => o.kind === "PodMonitor")) {
      const pods = workloads.filter((w) => matchSelector(pm.spec.selector, podLabels(w)));
      if (pods.length === 0) { errors.push(`${id(pm)}: selects no pods`); continue; }
      for (const ep of pm.spec.podMetricsEndpoints ?? []) {
        const ref = ep.port ?? ep.portNumber ?? ep.targetPort;
        if (ref === undefined) { errors.push(`${id(pm)}: an endpoint names no port`); continue; }
        for (const w of pods) {
          const found = targets([w], ref);
          if (found.length === 0) errors.push(`${id(pm)} port ${ref}: ${id(w)} has no such container port`);
          for (const t of found)
            if (t.port !== t.metrics) errors.push(`${id(pm)} port ${ref}: ${describe(t)} is not its Farm__Telemetry__PrometheusPort (${t.metrics ?? "unset: no /metrics"})`);
        }
        if (ep.path !== undefined && ep.path !== "/metrics") errors.push(`${id(pm)} path ${ep.path}: the apps serve /metrics`);
      }
    }
    for (const sm of rendered.filter((o) => o.kind === "ServiceMonitor")) {
      const services = rendered.filter((o) => o.kind === "Service" && matchSelector(sm.spec.selector, o.metadata.labels ?? {}));
      if (services.length === 0) { errors.push(`${id(sm)}: selects no Service`); continue; }
      for (const ep of sm.spec.endpoints ?? []) {
        for (const svc of services) {
          const sp = (svc.spec.ports ?? []).find((p) => (ep.port !== undefined ? p.name === ep.port : ep.targetPort !== undefined && (p.targetPort ?? p.port) === ep.targetPort));
          if (!sp) { errors.push(`${id(sm)} endpoint ${ep.port ?? ep.targetPort}: ${id(svc)} has no such port`); continue; }
          const pods = workloads.filter((w) => matchLabels(svc.spec.selector, podLabels(w)));
          const found = targets(pods, sp.targetPort ?? sp.port);
          if (found.length === 0) errors.push(`${id(sm)} endpoint ${ep.port}: ${id(svc)} port ${sp.name ?? sp.port} reaches no container port`);
          for (const t of found)
            if (t.port !== t.metrics) errors.push(`${id(sm)} endpoint ${ep.port}: ${id(svc)} → ${describe(t)}, not its Farm__Telemetry__PrometheusPort (${t.metrics ?? "unset: no /metrics"})`);
        }
        if (ep.path !== undefined && ep.path !== "/metrics") errors.push(`${id(sm)} path ${ep.path}: the apps serve /metrics`);
      }
    }
    // A Service that is not for metrics must not route to the metrics port (the gRPC Service is h2c-only).
    for (const svc of rendered.filter((o) => o.kind === "Service")) {
      const pods = workloads.filter((w) => matchLabels(svc.spec.selector, podLabels(w)));
      for (const p of svc.spec.ports ?? [])
        for (const t of targets(pods, p.targetPort ?? p.port))
          if (t.metrics !== undefined && t.port === t.metrics && !rendered.some((o) => o.kind === "ServiceMonitor" && matchSelector(o.spec.selector, svc.metadata.labels ?? {})))
            errors.push(`${id(svc)} port ${p.name ?? p.port} routes to the metrics port of ${id(t.w)}, but no ServiceMonitor scrapes it`);
    }
  });

  if (render.startsWith("gpu")) {
    checks.run(`${prefix} GPU workers: nvidia.com/gpu, cuda provider, GPU image, tolerations`, (errors) => {
      if (!wc) return errors.push("no worker");
      if (String(wc.resources?.limits?.["nvidia.com/gpu"]) !== "1") errors.push("limits nvidia.com/gpu: 1 missing");
      if (resolveEnv(objects, wc, "Farm__ExecutionProvider") !== "cuda") errors.push("Farm__ExecutionProvider is not cuda");
      if (!/-gpu$/.test(wc.image)) errors.push(`image ${wc.image} is not a -gpu tag`);
      if (!(worker.spec.template.spec.tolerations ?? []).some((t) => t.key === "nvidia.com/gpu")) errors.push("no nvidia.com/gpu toleration");
    });
  }
  if (render.startsWith("cpu")) {
    checks.run(`${prefix} CPU workers: cpu provider, CPU image, no GPU request`, (errors) => {
      if (!wc) return errors.push("no worker");
      if (resolveEnv(objects, wc, "Farm__ExecutionProvider") !== "cpu") errors.push("Farm__ExecutionProvider is not cpu");
      if (!/-cpu$/.test(wc.image)) errors.push(`image ${wc.image} is not a -cpu tag`);
      if (wc.resources?.limits?.["nvidia.com/gpu"] !== undefined) errors.push("requests a GPU");
    });
  }
}

console.log(`COUNTS k8s ${checks.passed} ${checks.failed}`);
checks.finish();
