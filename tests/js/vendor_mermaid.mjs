// Copies Mermaid's browser bundle from tests/js/node_modules into the package, where `agentfsm ui` serves it
// (the page works offline: nothing is loaded from a CDN). To update Mermaid:
//   npm install --prefix tests/js mermaid@VERSION   (pins it in tests/js/package.json and package-lock.json)
//   node tests/js/vendor_mermaid.mjs
// tests/test_web_api.py checks that the vendored copy is the one tests/js pins.
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const source = join(here, "node_modules", "mermaid");
const target = join(here, "..", "..", "agentfsm", "web", "static", "vendor");
const { version } = JSON.parse(readFileSync(join(source, "package.json"), "utf8"));
copyFileSync(join(source, "dist", "mermaid.min.js"), join(target, "mermaid.min.js"));
copyFileSync(join(source, "LICENSE"), join(target, "mermaid.LICENSE"));
writeFileSync(join(target, "MERMAID_VERSION"), `${version}\n`);
console.log(`vendored mermaid ${version} into ${target}`);
