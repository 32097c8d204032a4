// Checks deploy/monitoring offline: the Prometheus config scrapes the metrics port the apps are given, and every
// metric the Grafana dashboard queries is one the code defines (meter instrument names, as Prometheus names them).
// Usage: node monitoring.mjs REPO_ROOT
import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { Checks } from "./lib.mjs";

const [repoRoot] = process.argv.slice(2);
const checks = new Checks("monitoring");
const dir = path.join(repoRoot, "deploy/monitoring");

// Instrument name → Prometheus names: dots become underscores, the unit ("s" → _seconds, "By" → _bytes) is appended,
// counters get _total, histograms _bucket/_sum/_count.
function definedMetrics() {
  const names = new Set();
  const sources = ["src/Coordinator/Diagnostics/CoordinatorMetrics.cs", "src/Worker/Diagnostics/WorkerMetrics.cs", "src/Telemetry/RedisCommandLatency.cs"];
  for (const file of sources) {
    const text = fs.readFileSync(path.join(repoRoot, file), "utf8");
    const constants = Object.fromEntries([...text.matchAll(/const string (\w+) = "([^"]+)"/g)].map((m) => [m[1], m[2]]));
    for (const m of text.matchAll(/Create(Counter|Histogram|ObservableGauge)(?:<\w+>)?\(\s*(?:"([^"]+)"|(\w+))[\s\S]*?unit: "([^"]*)"/g)) {
      const [, kind, literal, constant, unit] = m;
      const base = (literal ?? constants[constant] ?? "").replaceAll(".", "_");
      const suffix = unit === "s" ? "_seconds" : unit === "By" ? "_bytes" : "";
      const name = base + suffix;
      if (kind === "Counter") names.add(`${name}_total`);
      else if (kind === "Histogram") for (const s of ["_bucket", "_sum", "_count"]) names.add(name + s);
      else names.add(name);
    }
  }
  return names;
}

checks.run("prometheus.yml parses and scrapes the coordinator and the workers on port 9464", (errors) => {
  const config = YAML.parse(fs.readFileSync(path.join(dir, "prometheus.yml"), "utf8"));
  const jobs = config?.scrape_configs ?? [];
  const coordinator = jobs.find((j) => j.job_name === "renderfarm-coordinator");
  const worker = jobs.find((j) => j.job_name === "renderfarm-worker");
  if (!coordinator?.static_configs?.some((s) => s.targets?.includes("coordinator:9464"))) errors.push("no coordinator:9464 target");
  if (!worker?.dns_sd_configs?.some((d) => d.port === 9464 && d.names?.includes("worker"))) errors.push("no worker DNS discovery on 9464");
  const compose = YAML.parse(fs.readFileSync(path.join(repoRoot, "docker-compose.yml"), "utf8"), { merge: true });
  for (const name of worker?.dns_sd_configs?.flatMap((d) => d.names) ?? [])
    if (!compose.services?.[name]) errors.push(`worker discovery names ${name}, which is not a compose service`);
  for (const [name, svc] of Object.entries(compose.services ?? {}))
    if (/coordinator|worker/.test(name) && String(svc.environment?.Farm__Telemetry__PrometheusPort) !== "9464")
      errors.push(`${name}: Farm__Telemetry__PrometheusPort is not 9464`);
});

checks.run("Grafana dashboard: valid JSON, provisioned data source, only metrics the code defines", (errors) => {
  const dashboard = JSON.parse(fs.readFileSync(path.join(dir, "grafana/renderfarm.json"), "utf8"));
  const datasources = YAML.parse(fs.readFileSync(path.join(dir, "grafana/provisioning/datasources/prometheus.yaml"), "utf8")).datasources;
  const uids = new Set(datasources.map((d) => d.uid));
  const defined = definedMetrics();
  if (defined.size < 10) errors.push(`found only ${defined.size} metric names in the sources`);
  if (!dashboard.uid || !Array.isArray(dashboard.panels) || dashboard.panels.length === 0) errors.push("no uid or no panels");
  for (const panel of dashboard.panels ?? []) {
    if (!uids.has(panel.datasource?.uid)) errors.push(`panel "${panel.title}": data source ${panel.datasource?.uid} is not provisioned`);
    for (const target of panel.targets ?? []) {
      const used = target.expr?.match(/renderfarm_\w+/g) ?? [];
      if (used.length === 0) errors.push(`panel "${panel.title}": query without a renderfarm metric`);
      for (const name of used) if (!defined.has(name)) errors.push(`panel "${panel.title}": ${name} is not a metric the code defines`);
    }
  }
});

checks.finish();
