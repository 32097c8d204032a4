// Checks deploy/s3/lifecycle.json offline: an S3 LifecycleConfiguration (as `aws s3api
// put-bucket-lifecycle-configuration` and MinIO's `mc ilm import` take it) whose expiry matches the farm's retention of
// results. The coordinator deletes a job's images Farm:Retention:ResultDays after the job finished; the bucket counts
// from each upload, which is earlier, so its rule expires objects one day later than that (rounded up to whole days,
// the unit S3 has): a backstop for anything the coordinator missed, never ahead of it for jobs shorter than a day.
// Usage: node s3.mjs REPO_ROOT
import fs from "node:fs";
import path from "node:path";
import { Checks } from "./lib.mjs";

const [repoRoot] = process.argv.slice(2);
const checks = new Checks("s3");

/** Every deploy file that may configure the coordinator. */
function deployFiles() {
  const out = [path.join(repoRoot, "docker-compose.yml"), path.join(repoRoot, "deploy/compose.env.example")];
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.ya?ml$/.test(e.name)) out.push(p);
    }
  };
  walk(path.join(repoRoot, "deploy/k8s"));
  return out;
}

/** Values a key is given in the deploy files (compose `KEY: v`, env files `KEY=v`, k8s `- name: KEY` + `value: v`). */
function settings(key) {
  const found = [];
  const pattern = new RegExp(`${key}["']?\\s*(?:[:=]|\\n\\s*value:)\\s*["']?([^"'\\s#]+)`, "g");
  for (const file of deployFiles()) {
    // Settings, not prose: a comment that shows a setting's form ("Farm__Storage=s3://BUCKET/PREFIX") sets nothing.
    const text = fs.readFileSync(file, "utf8").split("\n").filter((line) => !/^\s*#/.test(line)).join("\n");
    for (const m of text.matchAll(pattern)) found.push({ file: path.relative(repoRoot, file), value: m[1] });
  }
  return found;
}

/** RetentionOptions.ResultDays' default in the code. */
function defaultResultDays() {
  const text = fs.readFileSync(path.join(repoRoot, "src/Coordinator/Retention/RetentionOptions.cs"), "utf8");
  const m = /double\s+ResultDays\s*\{\s*get;\s*set;\s*\}\s*=\s*([\d.]+)/.exec(text);
  if (!m) throw new Error("ResultDays' default not found in RetentionOptions.cs");
  return Number(m[1]);
}

const isCount = (v) => Number.isInteger(v) && v >= 1;

checks.run("lifecycle.json is an S3 lifecycle configuration: enabled rules with an ID, a prefix filter and whole-day expiries", (errors) => {
  const config = JSON.parse(fs.readFileSync(path.join(repoRoot, "deploy/s3/lifecycle.json"), "utf8"));
  const allowed = new Set(["ID", "Status", "Filter", "Expiration", "NoncurrentVersionExpiration", "AbortIncompleteMultipartUpload"]);
  if (Object.keys(config).join() !== "Rules" || !Array.isArray(config.Rules) || config.Rules.length === 0) return errors.push("not { Rules: [...] }");
  for (const rule of config.Rules) {
    for (const k of Object.keys(rule)) if (!allowed.has(k)) errors.push(`${rule.ID}: unknown field ${k} (S3 refuses it)`);
    if (typeof rule.ID !== "string" || rule.ID.length === 0 || rule.ID.length > 255) errors.push("a rule without an ID (1-255 characters)");
    if (rule.Status !== "Enabled") errors.push(`${rule.ID}: Status is ${rule.Status}, not Enabled`);
    if (typeof rule.Filter?.Prefix !== "string" || Object.keys(rule.Filter).length !== 1) errors.push(`${rule.ID}: Filter must be { Prefix }`);
    if (!isCount(rule.Expiration?.Days) || Object.keys(rule.Expiration).length !== 1) errors.push(`${rule.ID}: Expiration must be { Days: whole days >= 1 }`);
    if (rule.NoncurrentVersionExpiration && !isCount(rule.NoncurrentVersionExpiration.NoncurrentDays)) errors.push(`${rule.ID}: NoncurrentDays must be whole days >= 1`);
    if (rule.AbortIncompleteMultipartUpload && !isCount(rule.AbortIncompleteMultipartUpload.DaysAfterInitiation))
      errors.push(`${rule.ID}: DaysAfterInitiation must be whole days >= 1`);
  }
});

checks.run("lifecycle.json expires results one day after Farm:Retention:ResultDays, under the storage prefix", (errors) => {
  const rule = JSON.parse(fs.readFileSync(path.join(repoRoot, "deploy/s3/lifecycle.json"), "utf8")).Rules?.[0];
  const set = settings("Farm__Retention__ResultDays");
  const values = new Set(set.map((s) => Number(s.value)));
  if (values.size > 1) errors.push(`Farm__Retention__ResultDays differs between deploy files: ${set.map((s) => `${s.file}=${s.value}`).join(", ")}`);
  const days = values.size === 1 ? [...values][0] : defaultResultDays();
  const source = set.length > 0 ? set[0].file : "RetentionOptions.ResultDays' default";
  if (!Number.isFinite(days) || days < 0) return errors.push(`ResultDays ${days} (${source}) is not a number of days`);
  if (days === 0) return errors.push(`ResultDays is 0 (${source}): images are kept forever, so the bucket must not expire them; drop deploy/s3/lifecycle.json`);
  const expected = Math.ceil(days) + 1;
  if (rule?.Expiration?.Days !== expected)
    errors.push(`Expiration.Days is ${rule?.Expiration?.Days}, expected ${expected}: ResultDays ${days} (${source}) rounded up, plus a day (S3 counts from the upload, the farm from the job's end)`);
  // Farm:Storage s3://BUCKET/PREFIX keeps images under PREFIX/JOB/; the rule must cover exactly those.
  const prefixes = new Set(settings("Farm__Storage").map((s) => s.value).filter((v) => v.startsWith("s3://"))
    .map((v) => v.replace(/^s3:\/\/[^/]+\/?/, "").replace(/\/+$/, "")).map((p) => (p ? `${p}/` : "")));
  for (const prefix of prefixes.size > 0 ? prefixes : new Set([""]))
    if (rule?.Filter?.Prefix !== prefix) errors.push(`Filter.Prefix is "${rule?.Filter?.Prefix}", but Farm__Storage keeps images under "${prefix}"`);
});

checks.finish();
