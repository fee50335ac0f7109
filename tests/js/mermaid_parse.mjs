// Run the real Mermaid parser over a batch of diagram texts.
//
// stdin:  a JSON array of diagram texts (strings).
// stdout: a JSON array with one entry per input, in order:
//   {"ok": true, "diagramType": "stateDiagram",
//    "states": {id: label, ...},            // [*] pseudo-states left out
//    "parents": {id: compositeId, ...},     // only for states nested in a composite
//    "transitions": [{"from": id, "to": id, "label": str}, ...],  // [*] -> "[*]"
//    "shapes": {id: shape}, "classes": {id: [class, ...]}, "notes": {id: text}}
//   {"ok": false, "error": "<Mermaid's message>"}
//
// Acceptance is decided by `mermaid.parse`; the states and transitions come from
// Mermaid's own state-diagram database (`diagram.db.getData()`, the very node/edge
// lists its renderer lays out), so nested (composite) states are included.
//
// Labels are reported as Mermaid displays them. Mermaid's `encodeEntities` turns
// `#58;` / `#quot;` in the source into private placeholders before parsing, and
// its renderer turns those back into `&#58;` / `&quot;` in the SVG, which the
// browser shows as `:` / `"`. We apply the same decoding (see `displayText`), so
// `state "A#58; b" as s1` is reported as {"s1": "A: b"}.
//
// Used by tests/mermaid.py; run: node tests/js/mermaid_parse.mjs < texts.json
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { JSDOM } from 'jsdom';

// Mermaid and its logger write to console.*; keep stdout for our JSON only.
for (const name of ['log', 'info', 'warn', 'debug', 'trace', 'error']) {
  console[name] = (...args) => process.stderr.write(args.map(String).join(' ') + '\n');
}

// DOM globals Mermaid (DOMPurify, d3) needs at import/parse time.
const dom = new JSDOM('<!doctype html><html><body></body></html>', { pretendToBeVisual: true });
const domGlobals = [
  'window', 'document', 'navigator', 'Element', 'HTMLElement', 'SVGElement', 'Node',
  'DOMParser', 'XMLSerializer', 'MutationObserver', 'CSSStyleSheet', 'getComputedStyle',
];
for (const name of domGlobals) {
  if (name === 'window') {
    globalThis.window = dom.window;
  } else if (!(name in globalThis)) {
    const value = dom.window[name];
    globalThis[name] = typeof value === 'function' && name === 'getComputedStyle' ? value.bind(dom.window) : value;
  }
}

const { default: mermaid } = await import('mermaid');
mermaid.initialize({ startOnLoad: false, securityLevel: 'strict' });

// Diagram types whose db is Mermaid's StateDB ('stateDiagram' is stateDiagram-v2).
const STATE_DIAGRAM_TYPES = new Set(['stateDiagram', 'state']);
// Shapes Mermaid's state db gives to nodes that are not states of the machine.
const PSEUDO_SHAPES = new Set(['stateStart', 'stateEnd']);
const SKIPPED_SHAPES = new Set(['note', 'noteGroup', 'divider']);

// Mermaid renders state and transition labels as markdown (labelType "markdown"):
// `**x**` shows as bold x, `_x_` as italic x. This mirrors markdownToHTML from
// mermaid/src/rendering-util/handle-markdown-text.ts, using the `marked` that
// Mermaid itself depends on.
const requireFromMermaid = createRequire(fileURLToPath(import.meta.resolve('mermaid')));
const { marked } = await import(pathToFileURL(requireFromMermaid.resolve('marked')).href);
function markdownToHTML(markdown) {
  const output = (node) => {
    switch (node.type) {
      case 'text':
        return node.text.replace(/\n */g, '<br/>');
      case 'strong':
        return `<strong>${node.tokens?.map(output).join('')}</strong>`;
      case 'em':
        return `<em>${node.tokens?.map(output).join('')}</em>`;
      case 'paragraph':
        return `<p>${node.tokens?.map(output).join('')}</p>`;
      case 'space':
        return '';
      case 'html':
        return `${node.text}`;
      case 'escape':
        return node.text;
      default:
        return node.raw; // Mermaid shows unsupported markdown (headings, code, lists...) raw
    }
  };
  return marked.lexer(markdown).map(output).join('');
}

// The text a reader sees: Mermaid's markdown step, then its decodeEntities
// (src/utils.ts: placeholders -> `&#58;`, `&quot;`, applied to the SVG), then
// the browser's HTML parsing of that (entities decoded, tags dropped; a <br>
// is reported as "\n").
const scratch = dom.window.document.createElement('div');
function displayText(value) {
  if (value === undefined || value === null) return '';
  const text = Array.isArray(value) ? value.join('\n') : String(value);
  const html = markdownToHTML(text).replace(/ﬂ°°/g, '&#').replace(/ﬂ°/g, '&').replace(/¶ß/g, ';');
  scratch.innerHTML = html;
  for (const br of [...scratch.querySelectorAll('br')]) br.replaceWith('\n');
  return scratch.textContent;
}

function errorMessage(err) {
  if (err && typeof err.message === 'string') return err.message;
  return String(err);
}

async function analyse(text) {
  if (typeof text !== 'string') {
    return { ok: false, error: `input is not a string: ${JSON.stringify(text)}` };
  }
  try {
    await mermaid.parse(text);
  } catch (err) {
    return { ok: false, error: errorMessage(err) };
  }
  let diagram;
  try {
    diagram = await mermaid.mermaidAPI.getDiagramFromText(text);
    const result = { ok: true, diagramType: diagram.type, states: {}, parents: {}, transitions: [] };
    const db = diagram.db;
    if (!STATE_DIAGRAM_TYPES.has(diagram.type)) {
      return result; // accepted, but not a state diagram: nothing to report
    }
    // Maps, not plain objects: a state may be called `__proto__` or `constructor`.
    const states = new Map();
    const parents = new Map();
    const { nodes, edges } = db.getData();
    const shapeOf = new Map(nodes.map((n) => [n.id, n.shape]));
    for (const node of nodes) {
      if (PSEUDO_SHAPES.has(node.shape) || SKIPPED_SHAPES.has(node.shape)) continue;
      // A state with several descriptions (`state "T" as s` plus `s : more`) is
      // drawn as a title with description lines under it: report them joined by \n.
      const lines = [node.label ?? node.id];
      if (Array.isArray(node.description)) lines.push(...node.description);
      states.set(node.id, lines.map(displayText).join('\n'));
      if (node.parentId) parents.set(node.id, node.parentId);
    }
    // What a state is drawn as (rect, choice, roundedWithTitle for a composite...) and the classes it
    // was given with `class` (Mermaid's own statediagram-* classes left out).
    const shapes = {};
    const classes = {};
    for (const node of nodes) {
      if (!states.has(node.id)) continue;
      shapes[node.id] = node.shape;
      const given = String(node.cssClasses ?? '').split(/\s+/).filter((c) => c && !c.startsWith('statediagram'));
      if (given.length) classes[node.id] = given;
    }
    const noteText = new Map(nodes.filter((n) => n.shape === 'note').map((n) => [n.id, displayText(n.label)]));
    const notes = {};
    const endpoint = (id) => (PSEUDO_SHAPES.has(shapeOf.get(id)) ? '[*]' : id);
    for (const edge of edges) {
      if (String(edge.classes).includes('note-edge')) { // a note's connector: which state it is about
        const [note, state] = noteText.has(edge.start) ? [edge.start, edge.end] : [edge.end, edge.start];
        if (noteText.has(note)) notes[state] = noteText.get(note);
        continue;
      }
      if (edge.classes !== 'transition') continue; // note connectors
      result.transitions.push({
        from: endpoint(edge.start),
        to: endpoint(edge.end),
        label: displayText(edge.label ?? ''),
      });
    }
    result.states = Object.fromEntries(states);
    result.parents = Object.fromEntries(parents);
    Object.assign(result, { shapes, classes, notes });
    return result;
  } catch (err) {
    return { ok: false, error: errorMessage(err) };
  } finally {
    // Each parse builds a fresh StateDB, but the title/accessibility fields
    // live in a module-global common db: clear everything anyway.
    try {
      diagram?.db?.clear?.();
    } catch {
      /* ignore */
    }
  }
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

const input = JSON.parse(await readStdin());
if (!Array.isArray(input)) {
  process.stderr.write('mermaid_parse.mjs: stdin must be a JSON array of strings\n');
  process.exit(2);
}
const results = [];
for (const text of input) {
  results.push(await analyse(text));
}
process.stdout.write(JSON.stringify(results));
process.stdout.write('\n');
