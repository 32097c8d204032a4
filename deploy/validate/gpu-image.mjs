// Does the GPU worker image's CUDA match what ONNX Runtime's GPU providers were linked against? Offline: reads the
// NEEDED entries (the ELF dynamic section, what `readelf -d` shows) of every libonnxruntime_providers_*.so in the
// published GPU worker, and compares the CUDA and cuDNN majors they need with those of worker.Dockerfile's CUDA_IMAGE
// (NVIDIA's tag format: nvidia/cuda:<x.y.z>-cudnn[N]-runtime-<os>), and TensorRT's with TENSORRT_VERSION when the
// image installs it. A package bump that moves to another CUDA major fails here instead of at a worker's first load.
// Usage: node gpu-image.mjs REPO_ROOT PUBLISHED_DIR [CUDA_IMAGE=tag] [TENSORRT_VERSION=version]
//        (the overrides stand in for the Dockerfile's defaults, as --build-arg does)
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { spawnSync } from "node:child_process";
import { Checks } from "./lib.mjs";
import { parseDockerfile, stages } from "./dockerfiles.mjs";

const DT_NEEDED = 1n, SHT_DYNAMIC = 6;

/** The DT_NEEDED sonames of an ELF64 little-endian shared library, in order (as `readelf -d` lists them). */
export function neededLibraries(file) {
  const fd = fs.openSync(file, "r");
  try {
    const read = (offset, length) => {
      const buf = Buffer.alloc(length);
      const n = fs.readSync(fd, buf, 0, length, offset);
      if (n !== length) throw new Error(`${file}: truncated at ${offset}`);
      return buf;
    };
    const header = read(0, 64);
    if (header.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${file} is not an ELF file`);
    if (header[4] !== 2 || header[5] !== 1) throw new Error(`${file} is not a 64-bit little-endian ELF file`);
    const shoff = Number(header.readBigUInt64LE(0x28)), shentsize = header.readUInt16LE(0x3a), shnum = header.readUInt16LE(0x3c);
    const section = (i) => {
      const s = read(shoff + i * shentsize, 64);
      return { type: s.readUInt32LE(4), offset: Number(s.readBigUInt64LE(24)), size: Number(s.readBigUInt64LE(32)), link: s.readUInt32LE(40) };
    };
    const sections = Array.from({ length: shnum }, (_, i) => section(i));
    const dynamic = sections.find((s) => s.type === SHT_DYNAMIC);
    if (!dynamic) throw new Error(`${file} has no dynamic section`);
    const strtab = sections[dynamic.link];
    const strings = read(strtab.offset, strtab.size);
    const entries = read(dynamic.offset, dynamic.size);
    const needed = [];
    for (let at = 0; at + 16 <= entries.length; at += 16) {
      const tag = entries.readBigInt64LE(at);
      if (tag === 0n) break; // DT_NULL
      if (tag === DT_NEEDED) {
        const start = Number(entries.readBigUInt64LE(at + 8));
        needed.push(strings.toString("latin1", start, strings.indexOf(0, start)));
      }
    }
    return needed;
  } finally {
    fs.closeSync(fd);
  }
}

/** CUDA and cuDNN majors of an NVIDIA CUDA image tag; null fields when the tag does not say. */
export function cudaImage(image) {
  const m = /^(?:[\w.-]+\/)*nvidia\/cuda:(\d+)\.(\d+)(?:\.(\d+))?-(?:(cudnn)(\d*)-)?(runtime|devel|base)-(\S+)$/.exec(image);
  if (!m) return null;
  // NVIDIA names the cuDNN major in older tags (cudnn8, cudnn9); the CUDA 12.x/13.x images drop it ("cudnn") and
  // carry cuDNN 9.
  const cudnn = m[4] ? (m[5] ? +m[5] : +m[1] >= 12 ? 9 : null) : null;
  return { cuda: +m[1], cudnn, flavour: m[6] };
}

/** The major version a library's soname carries (libcudart.so.13 → 13). */
const soMajor = (soname) => +/\.so\.(\d+)/.exec(soname)[1];

/** What the providers need, by component: { cuda: Map(soname → major), cudnn, tensorrt }. */
export function providerRequirements(needed) {
  const all = [...new Set(Object.values(needed).flat())];
  const pick = (re) => all.filter((n) => re.test(n));
  return {
    // cuRAND's soname major (10) has not followed CUDA's for years: the CUDA runtime and cuBLAS name the major.
    cuda: pick(/^lib(cudart|cublas|cublasLt)\.so\.\d+$/),
    cudnn: pick(/^libcudnn\.so\.\d+$/),
    tensorrt: pick(/^libnvinfer\.so\.\d+$/),
  };
}

function main(repoRoot, published, overrides) {
  const checks = new Checks("gpu image");
  const dockerfile = path.join(repoRoot, "deploy/docker/worker.Dockerfile");
  const { globalArgs, stages: st } = stages(parseDockerfile(fs.readFileSync(dockerfile, "utf8")));
  const gpuStage = st.find((s) => s.name === "runtime-gpu");
  const stageArg = (name) => gpuStage?.instructions.filter((i) => i.op === "ARG").map((i) => i.args.split("=")).find(([k]) => k === name)?.[1] ?? "";
  const image = overrides.CUDA_IMAGE ?? globalArgs.CUDA_IMAGE ?? "";
  const tensorRtVersion = overrides.TENSORRT_VERSION ?? stageArg("TENSORRT_VERSION");

  const providers = fs.existsSync(published) ? fs.readdirSync(published).filter((f) => /^libonnxruntime_providers_\w+\.so$/.test(f)) : [];
  const needed = {};
  checks.run(`the published GPU worker carries ONNX Runtime's CUDA provider and its NEEDED entries read (${published})`, (errors) => {
    if (!providers.includes("libonnxruntime_providers_cuda.so")) return errors.push("libonnxruntime_providers_cuda.so is not in the published output");
    for (const f of providers) {
      needed[f] = neededLibraries(path.join(published, f));
      // Where binutils is installed, the reader must agree with it.
      const readelf = spawnSync("readelf", ["-d", path.join(published, f)], { encoding: "utf8", maxBuffer: 1 << 24 });
      if (readelf.status === 0) {
        const theirs = [...readelf.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
        if (theirs.join(" ") !== needed[f].join(" ")) errors.push(`${f}: NEEDED read as [${needed[f]}], readelf -d says [${theirs}]`);
      }
    }
  });
  if (!needed["libonnxruntime_providers_cuda.so"]) return finish(checks);
  const wants = providerRequirements(needed);
  const need = (libs) => libs.join(", ");
  const majors = (libs) => [...new Set(libs.map(soMajor))];

  checks.run(`CUDA_IMAGE ${image} has the CUDA and cuDNN majors the providers NEED (${need([...wants.cuda, ...wants.cudnn])})`, (errors) => {
    const tag = cudaImage(image);
    if (!tag) return errors.push(`${image} is not an NVIDIA CUDA image tag (nvidia/cuda:<x.y.z>-cudnn-runtime-<os>)`);
    if (tag.flavour !== "runtime") errors.push(`${image} is a ${tag.flavour} image; the worker needs the runtime one`);
    const cuda = majors(wants.cuda);
    if (cuda.length === 0) errors.push("the providers NEED no CUDA runtime library (libcudart/libcublas): the check has nothing to compare");
    else if (cuda.length > 1) errors.push(`the providers NEED more than one CUDA major: ${need(wants.cuda)}`);
    else if (cuda[0] !== tag.cuda)
      errors.push(`the providers NEED CUDA ${cuda[0]} (${need(wants.cuda)}) but ${image} is CUDA ${tag.cuda}: use an nvidia/cuda:${cuda[0]}.x.y-cudnn-runtime image`);
    if (tag.cudnn === null) errors.push(`${image} has no cuDNN (use a -cudnn-runtime- tag): ONNX Runtime's CUDA provider needs cuDNN`);
    for (const major of majors(wants.cudnn))
      if (tag.cudnn !== null && major !== tag.cudnn) errors.push(`the providers NEED cuDNN ${major} (libcudnn.so.${major}) but ${image} carries cuDNN ${tag.cudnn}`);
  });

  checks.run(`TensorRT: ${tensorRtVersion ? `TENSORRT_VERSION ${tensorRtVersion}` : "not installed (TENSORRT_VERSION empty)"}, the providers NEED ${need(wants.tensorrt) || "none"}`, (errors) => {
    if (!tensorRtVersion) return; // the tensorrt provider then reports the missing library at load; cuda needs none
    const trt = majors(wants.tensorrt);
    const version = /^(\d+)\.[\d.]+-\d+\+cuda(\d+)\.\d+$/.exec(tensorRtVersion);
    if (!version) return errors.push(`TENSORRT_VERSION ${tensorRtVersion} is not an NVIDIA apt version (<major.minor.patch.build>-1+cuda<x.y>)`);
    if (trt.length && +version[1] !== trt[0]) errors.push(`the providers NEED TensorRT ${trt[0]} (libnvinfer.so.${trt[0]}) but TENSORRT_VERSION is ${version[1]}.x`);
    const cuda = cudaImage(image)?.cuda;
    if (+version[2] !== cuda) errors.push(`TENSORRT_VERSION ${tensorRtVersion} is a build for CUDA ${version[2]}, the image is CUDA ${cuda}`);
    const installs = gpuStage.instructions.filter((i) => i.op === "RUN").map((i) => i.args).join(" ");
    for (const major of trt)
      if (!new RegExp(`\\blibnvinfer${major}=`).test(installs)) errors.push(`runtime-gpu does not install libnvinfer${major} (the package of libnvinfer.so.${major})`);
  });
  return finish(checks);
}

function finish(checks) {
  console.log(`COUNTS gpu-image ${checks.passed} ${checks.failed}`);
  checks.finish();
}

if (fileURLToPath(import.meta.url) === path.resolve(process.argv[1] ?? "")) {
  const [repoRoot, published, ...kv] = process.argv.slice(2);
  if (!repoRoot || !published) {
    console.error("usage: node gpu-image.mjs REPO_ROOT PUBLISHED_DIR [CUDA_IMAGE=tag] [TENSORRT_VERSION=version]");
    process.exit(2);
  }
  main(repoRoot, published, Object.fromEntries(kv.map((s) => [s.slice(0, s.indexOf("=")), s.slice(s.indexOf("=") + 1)])));
}
