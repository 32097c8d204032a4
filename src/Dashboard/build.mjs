// Bundles src/main.ts into dist/app.js (minified, one file) and copies the page and styles beside it. Run by
// `npm run build`, which the coordinator's build runs (src/Coordinator/RenderFarm.Coordinator.csproj).
import { build } from "esbuild";
import { copyFile, mkdir } from "node:fs/promises";

const out = process.argv[2] ?? "dist";
await mkdir(out, { recursive: true });
await build({
  entryPoints: ["src/main.ts"],
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  outfile: `${out}/app.js`,
  logLevel: "warning",
});
await copyFile("index.html", `${out}/index.html`);
await copyFile("style.css", `${out}/style.css`);
