// Dockerfile checks, offline:
//  lint   — dockerfile-utils (the parser/validator behind VS Code's Dockerfile language server; every rule as an
//           error) plus this project's rules: pinned base images, non-root USER, HEALTHCHECK running the app's gRPC health command, exec-form ENTRYPOINT
//           running the published dll, EXPOSE = the app's port, lean apt usage, no models in the image.
//  build  — runs the build stage for real without Docker: copies the build context as .dockerignore filters it,
//           then runs the stage's RUN commands (the `dotnet restore` / `dotnet publish` the image build runs), with
//           container paths mapped into a scratch folder; then checks the final stage's ENTRYPOINT dll was produced.
// Usage: node dockerfiles.mjs lint REPO_ROOT
//        node dockerfiles.mjs build REPO_ROOT DOCKERFILE SCRATCH [ARG=VALUE ...]
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { validate, ValidationSeverity } from "dockerfile-utils";
import { Checks } from "./lib.mjs";

const require = createRequire(import.meta.url);
const ignore = require("@balena/dockerignore");

/** Instructions of a Dockerfile: {op, args, line}, continuation lines joined, comments dropped. */
export function parseDockerfile(text) {
  const out = [];
  const lines = text.split("\n");
  let buf = "", start = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (!buf && (/^\s*#/.test(line) || !line.trim())) continue;
    if (buf && /^\s*#/.test(line)) continue; // comment inside a continuation
    if (!buf) start = i + 1;
    if (/\\\s*$/.test(line)) { buf += line.replace(/\\\s*$/, " "); continue; }
    buf += line;
    const m = /^\s*(\w+)\s*(.*)$/s.exec(buf);
    out.push({ op: m[1].toUpperCase(), args: m[2].trim(), line: start });
    buf = "";
  }
  return out;
}

/** Stages: [{name, from, instructions}]; global ARGs (before the first FROM) with defaults. */
export function stages(instructions) {
  const globalArgs = {};
  const result = [];
  for (const ins of instructions) {
    if (ins.op === "FROM") {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      result.push({ from: m[1], name: m[2] ?? String(result.length), line: ins.line, instructions: [] });
    } else if (result.length === 0) {
      if (ins.op === "ARG") { const [k, v] = ins.args.split("="); globalArgs[k] = v ?? ""; }
    } else result.at(-1).instructions.push(ins);
  }
  return { globalArgs, stages: result };
}

const expand = (s, vars) => s.replace(/\$\{(\w+)(?::?-([^}]*))?\}|\$(\w+)/g, (all, a, def, b) => vars[a ?? b] || def || "");

function lint(repoRoot) {
  const checks = new Checks("dockerfile");
  const dir = path.join(repoRoot, "deploy/docker");
  const expected = { "coordinator.Dockerfile": { port: 5000, dll: "RenderFarm.Coordinator.dll" }, "worker.Dockerfile": { port: 5080, dll: "RenderFarm.Worker.dll" } };
  for (const [file, want] of Object.entries(expected)) {
    const full = path.join(dir, file);
    if (!fs.existsSync(full)) { checks.run(file, (e) => e.push("missing")); continue; }
    const text = fs.readFileSync(full, "utf8");
    checks.run(`${file}: dockerfile-utils, every rule an error`, (errors) => {
      const all = ValidationSeverity.ERROR;
      const settings = {
        deprecatedMaintainer: all, directiveCasing: all, emptyContinuationLine: all, instructionCasing: all,
        instructionCmdMultiple: all, instructionEntrypointMultiple: all, instructionHealthcheckMultiple: all,
        instructionJSONInSingleQuotes: all, instructionWorkdirRelative: all,
      };
      for (const d of validate(text, settings)) errors.push(`line ${d.range.start.line + 1}: ${d.message}`);
    });
    const ins = parseDockerfile(text);
    const { globalArgs, stages: st } = stages(ins);
    const final = st.at(-1);
    checks.run(`${file}: base images pinned; final stage non-root with a gRPC health HEALTHCHECK, EXPOSE ${want.port}, ENTRYPOINT ${want.dll}`, (errors) => {
      for (const s of st) {
        const image = expand(s.from, globalArgs);
        if (st.some((o) => o.name === image) || /\$\{?FLAVOR/.test(s.from)) continue; // a stage, not an image
        if (!/:[\w][\w.-]*$/.test(image) && !image.includes("@sha256:")) errors.push(`line ${s.line}: FROM ${image} has no tag`);
        if (/:latest$/.test(image)) errors.push(`line ${s.line}: FROM ${image} uses :latest`);
      }
      const ops = (op) => final.instructions.filter((i) => i.op === op);
      const user = ops("USER").at(-1)?.args;
      if (!user || /^(root|0)(:|$)/.test(user)) errors.push(`final stage runs as ${user ?? "root (no USER)"}`);
      if (ops("HEALTHCHECK").length !== 1) errors.push("final stage needs one HEALTHCHECK");
      else {
        // The app's own gRPC health command: the same checks kubelet's grpc probes see, no curl in the image.
        const cmd = /\bCMD\s+(\[.*\])\s*$/.exec(ops("HEALTHCHECK")[0].args)?.[1];
        let argv;
        try { argv = JSON.parse(cmd); } catch { argv = null; }
        if (!argv || argv[0] !== "dotnet" || argv[1] !== want.dll || argv[2] !== "health")
          errors.push(`HEALTHCHECK is not CMD ["dotnet", "${want.dll}", "health"]`);
      }
      if (!ops("EXPOSE").some((e) => e.args.split(/\s+/).includes(String(want.port)))) errors.push(`no EXPOSE ${want.port}`);
      const ep = ops("ENTRYPOINT").at(-1)?.args;
      let parsed;
      try { parsed = JSON.parse(ep); } catch { errors.push(`ENTRYPOINT ${ep} is not exec form`); }
      if (parsed && (parsed[0] !== "dotnet" || parsed[1] !== want.dll)) errors.push(`ENTRYPOINT ${ep} does not run ${want.dll}`);
    });
    checks.run(`${file}: apt lean (--no-install-recommends, lists removed), nothing model-sized copied in`, (errors) => {
      for (const i of ins) {
        if (i.op === "RUN" && /apt-get install/.test(i.args)) {
          if (!/--no-install-recommends/.test(i.args)) errors.push(`line ${i.line}: apt-get install without --no-install-recommends`);
          if (!/rm -rf \/var\/lib\/apt\/lists/.test(i.args)) errors.push(`line ${i.line}: apt lists not removed in the same layer`);
          if (!/apt-get update/.test(i.args)) errors.push(`line ${i.line}: apt-get install without apt-get update in the same layer`);
        }
        if ((i.op === "COPY" || i.op === "ADD") && /models|\.onnx/.test(i.args)) errors.push(`line ${i.line}: ${i.op} ${i.args}: models are mounted, never baked in`);
        if (i.op === "ADD") errors.push(`line ${i.line}: use COPY, not ADD`);
      }
      const copyAll = ins.filter((i) => i.op === "COPY" && /^\.\s+\./.test(i.args));
      if (copyAll.length && !fs.existsSync(path.join(repoRoot, ".dockerignore"))) errors.push("COPY . . without a .dockerignore");
    });
    if (file === "worker.Dockerfile") {
      checks.run(`${file}: FLAVOR selects runtime-cpu / runtime-gpu; the publish passes OnnxRuntimeFlavor`, (errors) => {
        if (globalArgs.FLAVOR !== "cpu") errors.push(`ARG FLAVOR default is ${globalArgs.FLAVOR}, expected cpu`);
        for (const f of ["cpu", "gpu"]) if (!st.some((s) => s.name === `runtime-${f}`)) errors.push(`no stage runtime-${f}`);
        if (!/runtime-\$\{?FLAVOR\}?/.test(final.from)) errors.push(`final stage is FROM ${final.from}, not runtime-\${FLAVOR}`);
        const build = st.find((s) => s.name === "build");
        const publish = build?.instructions.find((i) => i.op === "RUN" && /dotnet publish/.test(i.args));
        if (!publish || !/-p:OnnxRuntimeFlavor="?\$\{?FLAVOR/.test(publish.args)) errors.push("dotnet publish does not pass -p:OnnxRuntimeFlavor=$FLAVOR");
        const gpu = st.find((s) => s.name === "runtime-gpu");
        if (gpu && !/nvidia\/cuda:.*cudnn.*runtime/.test(expand(gpu.from, globalArgs))) errors.push(`runtime-gpu is FROM ${expand(gpu.from, globalArgs)}, not a CUDA+cuDNN runtime image`);
      });
    }
  }
  console.log(`COUNTS dockerfile ${checks.passed} ${checks.failed}`);
  checks.finish();
}

function build(repoRoot, dockerfile, scratch, overrides) {
  const text = fs.readFileSync(dockerfile, "utf8");
  const { globalArgs, stages: st } = stages(parseDockerfile(text));
  const buildStage = st.find((s) => s.name === "build");
  if (!buildStage) throw new Error(`${dockerfile}: no stage named build`);
  const image = path.basename(dockerfile, ".Dockerfile");
  // Container paths → scratch: WORKDIRs are shared between images (one source tree, incremental builds), any
  // other absolute path (the publish output) is per image.
  const workdirs = buildStage.instructions.filter((i) => i.op === "WORKDIR").map((i) => i.args);
  const map = (p) => (workdirs.some((w) => p === w || p.startsWith(w + "/")) ? path.join(scratch, "ctx", p) : path.join(scratch, image, p));
  const remap = (cmd) => cmd.replace(/(^|[\s="'])(\/(?:src|app)(?:\/[^\s"']*)?)/g, (all, pre, p) => pre + map(p));
  const platform = { TARGETARCH: process.arch === "arm64" ? "arm64" : "amd64", TARGETOS: "linux" };
  const env = { ...process.env, ...platform };
  let cwd = scratch;
  for (const ins of buildStage.instructions) {
    switch (ins.op) {
      case "ARG": {
        // As BuildKit: a stage sees an ARG only once it declares it; value = --build-arg, else the stage's default,
        // else the global default. TARGETARCH/TARGETOS are predefined (this machine's).
        const [k, v] = ins.args.split("=");
        if (k in overrides) env[k] = overrides[k];
        else if (v !== undefined) env[k] = v;
        else if (k in globalArgs) env[k] = globalArgs[k];
        else if (!(k in platform)) env[k] = "";
        break;
      }
      case "ENV": {
        for (const m of ins.args.matchAll(/(\w+)=("[^"]*"|\S*)/g)) env[m[1]] = m[2].replace(/^"|"$/g, "");
        break;
      }
      case "WORKDIR":
        cwd = map(ins.args);
        fs.mkdirSync(cwd, { recursive: true });
        break;
      case "COPY": {
        const parts = ins.args.split(/\s+/).filter((p) => !p.startsWith("--"));
        if (ins.args.includes("--from=")) throw new Error(`line ${ins.line}: COPY --from in the build stage is not simulated`);
        const dest = parts.at(-1);
        const target = path.isAbsolute(dest) ? map(dest) : path.resolve(cwd, dest);
        const ig = ignore({ ignorecase: false }).add(fs.existsSync(path.join(repoRoot, ".dockerignore")) ? fs.readFileSync(path.join(repoRoot, ".dockerignore"), "utf8") : "");
        for (const src of parts.slice(0, -1)) {
          const from = path.resolve(repoRoot, src);
          const into = src === "." || dest.endsWith("/") || parts.length > 2 ? (src === "." ? target : path.join(target, path.basename(src))) : target;
          fs.cpSync(from, into, {
            recursive: true,
            filter: (p) => { const rel = path.relative(repoRoot, p); return rel === "" || !ig.ignores(rel.split(path.sep).join("/")); },
          });
        }
        break;
      }
      case "RUN": {
        const cmd = remap(ins.args.replace(/--(mount|network|security)=\S+\s*/g, ""));
        console.log(`==> [${image}] line ${ins.line}: ${cmd.replace(scratch, "$SCRATCH").replace(scratch, "$SCRATCH")}`);
        const r = spawnSync("bash", ["-euo", "pipefail", "-c", cmd], { cwd, env, stdio: "inherit" });
        if (r.status !== 0) { console.error(`FAIL: ${path.basename(dockerfile)} line ${ins.line} exited ${r.status}`); process.exit(1); }
        break;
      }
      default:
        break; // LABEL etc.: nothing to run
    }
  }
  // The final stage's ENTRYPOINT dll must be in what it copies from the build stage.
  const final = st.at(-1);
  const entry = JSON.parse(final.instructions.filter((i) => i.op === "ENTRYPOINT").at(-1).args);
  const copy = final.instructions.find((i) => i.op === "COPY" && /--from=build/.test(i.args));
  const src = copy.args.split(/\s+/).filter((p) => !p.startsWith("--"))[0];
  const dll = path.join(map(src), entry[1]);
  if (!fs.existsSync(dll)) { console.error(`FAIL: ${entry[1]} not in the published output (${dll})`); process.exit(1); }
  console.log(`OK ${path.basename(dockerfile)} (${Object.entries(overrides).map(([k, v]) => `${k}=${v}`).join(" ")}): ${entry[1]} published to ${path.relative(scratch, map(src))}`);
}

// Run as a script (gpu-image.mjs imports the parser and does not want this).
if (fileURLToPath(import.meta.url) === path.resolve(process.argv[1] ?? "")) {
  const [mode, repoRoot, ...rest] = process.argv.slice(2);
  if (mode === "lint" && repoRoot) lint(repoRoot);
  else if (mode === "build" && repoRoot && rest.length >= 2) {
    const [dockerfile, scratch, ...kv] = rest;
    build(repoRoot, dockerfile, scratch, Object.fromEntries(kv.map((s) => s.split("="))));
  } else {
    console.error("usage: node dockerfiles.mjs lint REPO_ROOT | build REPO_ROOT DOCKERFILE SCRATCH [ARG=VALUE ...]");
    process.exit(2);
  }
}
