// Can each image load the native libraries its app publishes? Offline: reads the NEEDED entries (the ELF dynamic
// section) of every native library at the top of a published app (libSkiaSharp.so, libonnxruntime.so; the GPU
// providers are gpu-image.mjs's) and checks that the image the Dockerfile runs the app on carries each of them: the
// .NET runtime-deps packages for images built on Microsoft's aspnet image, the packages the stage installs for the GPU
// image. SkiaSharp's fontconfig variant (libfontconfig.so.1, libfreetype) in the coordinator or the worker fails here,
// not at its first decoded image.
// Usage: node native-libs.mjs REPO_ROOT DOCKERFILE PUBLISHED_DIR [FLAVOR=cpu|gpu] [--library FILE]
//        (--library checks FILE instead of the published libraries: validate-deploy's check of this check)
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Checks } from "./lib.mjs";
import { parseDockerfile, stages } from "./dockerfiles.mjs";
import { neededLibraries } from "./gpu-image.mjs";

/** The shared libraries (sonames) of the Debian/Ubuntu packages the runtime images carry. */
const SONAMES = {
  libc6: ["libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "libresolv.so.2", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"],
  "libgcc-s1": ["libgcc_s.so.1"],
  "libstdc++6": ["libstdc++.so.6"],
  zlib1g: ["libz.so.1"],
  libssl3t64: ["libssl.so.3", "libcrypto.so.3"],
  libssl3: ["libssl.so.3", "libcrypto.so.3"],
};

/** Microsoft's runtime-deps image (Ubuntu 24.04), the base of its aspnet and runtime images: its apt-get install list. */
const DOTNET_RUNTIME_DEPS = ["ca-certificates", "libc6", "libgcc-s1", "libicu74", "libssl3t64", "libstdc++6", "tzdata", "zlib1g"];

/** The packages of the image a Dockerfile's final stage runs on, for FLAVOR; with a description. */
export function imagePackages(dockerfileText, flavor) {
  const { globalArgs, stages: st } = stages(parseDockerfile(dockerfileText));
  const expand = (s) => s.replace(/\$\{?(\w+)\}?/g, (_, k) => (k === "FLAVOR" ? flavor : globalArgs[k] ?? ""));
  let stage = st.at(-1);
  const installed = [];
  // Follow FROM through the file's own stages (final → runtime-${FLAVOR} → …) to an outside image.
  for (;;) {
    for (const ins of stage.instructions.filter((i) => i.op === "RUN"))
      for (const m of ins.args.matchAll(/apt-get install\s+([^&;|]*)/g))
        installed.push(...m[1].split(/\s+/).filter((p) => p && !p.startsWith("-") && !p.includes("$") && !p.includes("=") && !p.startsWith('"')));
    const from = expand(stage.from);
    const parent = st.find((s) => s.name === from);
    if (!parent) {
      const dotnet = /^mcr\.microsoft\.com\/dotnet\/(aspnet|runtime|runtime-deps):/.test(from);
      return { image: from, packages: [...(dotnet ? DOTNET_RUNTIME_DEPS : []), ...installed] };
    }
    stage = parent;
  }
}

function main(repoRoot, dockerfile, published, flavor, library) {
  const checks = new Checks("native libraries");
  const { image, packages } = imagePackages(fs.readFileSync(dockerfile, "utf8"), flavor);
  const provided = new Set(packages.flatMap((p) => SONAMES[p] ?? []));
  const libraries = library
    ? [library]
    : fs.readdirSync(published).filter((f) => f.endsWith(".so") && !/^libonnxruntime_providers_/.test(f)).map((f) => path.join(published, f));
  const where = `${path.basename(dockerfile)}${flavor ? ` (FLAVOR=${flavor})` : ""} on ${image}`;
  checks.run(`${where}: the published app carries Skia's native library`, (errors) => {
    if (!library && !libraries.some((f) => path.basename(f) === "libSkiaSharp.so")) errors.push(`libSkiaSharp.so is not in ${published}`);
  });
  for (const file of libraries) {
    const needed = neededLibraries(file);
    checks.run(`${where}: ${path.basename(file)} NEEDS only what the image carries (${needed.join(", ")})`, (errors) => {
      const missing = needed.filter((n) => !provided.has(n));
      if (missing.length)
        errors.push(`${file} NEEDS ${missing.join(", ")}, which the image's packages (${packages.join(" ")}) do not provide` +
          (missing.some((m) => /fontconfig|freetype/.test(m)) ? ": use SkiaSharp.NativeAssets.Linux.NoDependencies for an app that draws no text" : ""));
    });
  }
  console.log(`COUNTS native-libs ${checks.passed} ${checks.failed}`);
  checks.finish();
}

if (fileURLToPath(import.meta.url) === path.resolve(process.argv[1] ?? "")) {
  const args = process.argv.slice(2);
  const at = args.indexOf("--library");
  const library = at >= 0 ? args.splice(at, 2)[1] : undefined;
  const [repoRoot, dockerfile, published, kv] = args;
  if (!repoRoot || !dockerfile || !published) {
    console.error("usage: node native-libs.mjs REPO_ROOT DOCKERFILE PUBLISHED_DIR [FLAVOR=cpu|gpu] [--library FILE]");
    process.exit(2);
  }
  main(repoRoot, dockerfile, published, kv?.startsWith("FLAVOR=") ? kv.slice("FLAVOR=".length) : "", library);
}
