// Prints the environment a container gets from the deployment files, rewritten to run as a plain process on this
// machine: service hosts → 127.0.0.1 with the ports given, listen URLs → 127.0.0.1, container paths → under ROOT.
// One KEY=VALUE per line.
// Usage: node smoke-env.mjs REPO_ROOT compose SERVICE                        [rewrites...]
//        node smoke-env.mjs REPO_ROOT k8s RENDER.yaml SECRETS.yaml CONTAINER  [rewrites...]
// rewrites: --host NAME=HOST:PORT (a service name: redis, coordinator) --listen NAME=PORT (coordinator|worker)
//           --root DIR (prefix for absolute container paths) --set KEY=VALUE (override after rewriting)
import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { loadYamlDocs } from "./lib.mjs";

const argv = process.argv.slice(2);
const [repoRoot, source] = argv;
let rest;
let env = {};
let app;

function flags(list) {
  const f = { host: {}, listen: {}, set: {}, root: null };
  for (let i = 0; i < list.length; i += 2) {
    const [k, v] = [list[i], list[i + 1]];
    if (k === "--root") f.root = v;
    else if (k === "--host" || k === "--listen" || k === "--set") {
      const j = v.indexOf("=");
      f[k.slice(2)][v.slice(0, j)] = v.slice(j + 1);
    } else throw new Error(`unknown option ${k}`);
  }
  return f;
}

if (source === "compose") {
  const service = argv[2];
  rest = argv.slice(3);
  app = /coordinator/.test(service) ? "coordinator" : "worker";
  const vars = new Map();
  for (const line of fs.readFileSync(path.join(repoRoot, "deploy/compose.env.example"), "utf8").split("\n")) {
    const m = /^\s*([A-Za-z_]\w*)=(.*)$/.exec(line);
    if (m) vars.set(m[1], m[2]);
  }
  const interp = (s) => s.replace(/\$\$|\$\{([A-Za-z_]\w*)(?:(:?[-?+])([^}]*))?\}/g, (all, name, op, arg) => {
    if (all === "$$") return "$";
    const v = vars.get(name);
    if (op === ":-" || op === "-") return v ? v : interp(arg);
    return v ?? "";
  });
  const doc = YAML.parse(fs.readFileSync(path.join(repoRoot, "docker-compose.yml"), "utf8"), { merge: true, maxAliasCount: 1000 });
  const svc = doc.services[service];
  if (!svc) throw new Error(`no service ${service}`);
  for (const [k, v] of Object.entries(svc.environment ?? {})) env[k] = interp(String(v));
} else if (source === "k8s") {
  const [renderFile, secretsFile, container] = argv.slice(2, 5);
  rest = argv.slice(5);
  app = container;
  const objects = [...loadYamlDocs(renderFile), ...loadYamlDocs(secretsFile)];
  const workload = objects.find((o) => o.spec?.template?.spec?.containers?.some((c) => c.name === container));
  if (!workload) throw new Error(`no container ${container}`);
  const c = workload.spec.template.spec.containers.find((x) => x.name === container);
  const find = (kind, name) => objects.find((o) => o.kind === kind && o.metadata.name === name);
  for (const e of c.env ?? []) {
    let v;
    if (e.value !== undefined) v = String(e.value).replace(/\$\((\w+)\)/g, (all, n) => (n in env ? env[n] : all));
    else if (e.valueFrom?.configMapKeyRef) v = find("ConfigMap", e.valueFrom.configMapKeyRef.name)?.data?.[e.valueFrom.configMapKeyRef.key];
    else if (e.valueFrom?.secretKeyRef) {
      const b64 = find("Secret", e.valueFrom.secretKeyRef.name)?.data?.[e.valueFrom.secretKeyRef.key];
      v = b64 === undefined ? undefined : Buffer.from(b64, "base64").toString("utf8");
    } else if (e.valueFrom?.fieldRef?.fieldPath === "metadata.name") v = `${workload.metadata.name}-smoke-0`;
    if (v !== undefined) env[e.name] = v;
  }
} else {
  console.error("usage: see the header of smoke-env.mjs");
  process.exit(2);
}

const f = flags(rest);
for (const [k, v0] of Object.entries(env)) {
  let v = v0;
  for (const [name, target] of Object.entries(f.host))
    v = v.replace(new RegExp(`(^|[/@,])${name}(\\.[\\w-]+)*(\\.svc(\\.[\\w.-]+)?)?:\\d+`, "g"), `$1${target}`);
  if ((k === "Kestrel__Endpoints__Grpc__Url" && app === "coordinator") || (k === "Urls" && app === "worker"))
    v = v.replace(/\/\/[^/:]+:\d+/, `//127.0.0.1:${f.listen[app]}`);
  if (f.root && v.startsWith("/")) v = path.join(f.root, v);
  env[k] = v;
}
Object.assign(env, f.set);
for (const [k, v] of Object.entries(env)) console.log(`${k}=${v}`);
