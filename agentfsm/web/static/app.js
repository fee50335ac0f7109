// agentfsm ui: the page over the JSON API (docs/ui.md). Every value from the server is inserted as text
// (text nodes, textContent, attribute values), never as markup; the one piece of markup inserted is the SVG
// Mermaid draws from our own diagram source, scrubbed of scripts and event handlers before it is shown.
"use strict";

const FINISHED = ["succeeded", "failed", "cancelled"];
const FOLD = 160;
const ui = { token: "", streams: [], drawn: 0 };

// -- plumbing ------------------------------------------------------------------------------------------------

(function takeToken() {
  const params = new URLSearchParams(location.search);
  const given = params.get("token");
  if (given) {
    sessionStorage.setItem("agentfsm-token", given);
    history.replaceState(null, "", location.pathname + location.hash);  // out of the address bar and history
  }
  ui.token = sessionStorage.getItem("agentfsm-token") || "";
})();

function el(tag, props, ...kids) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "value") node.value = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === undefined || kid === null || kid === false) continue;
    node.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return node;
}

async function api(path, body) {
  const options = { headers: { "X-Agentfsm-Token": ui.token } };
  if (body !== undefined) {
    options.method = "POST";
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const raw = await response.text();
  let data;
  try { data = JSON.parse(raw); } catch { data = { error: raw.trim() || response.statusText }; }
  if (!response.ok) {
    const error = new Error(data.error || response.statusText);
    error.status = response.status;
    throw error;
  }
  return data;
}

function listen(holder, path, kind, handle) {
  if (!holder.isConnected) return null;  // the page asking was left while it loaded
  const source = new EventSource(path);
  source.addEventListener(kind, (message) => handle(JSON.parse(message.data)));
  source.addEventListener("refused", (message) => toast(JSON.parse(message.data).error, true));
  source.onopen = () => document.getElementById("live").classList.add("on");
  source.onerror = () => document.getElementById("live").classList.remove("on");
  ui.streams.push(source);
  return source;
}

function stopStreams() {
  for (const source of ui.streams) source.close();
  ui.streams = [];
  document.getElementById("live").classList.remove("on");
}

function toast(message, bad) {
  const line = el("div", { class: bad ? "error" : "" }, message);
  document.getElementById("toast").append(line);
  setTimeout(() => line.remove(), bad ? 8000 : 3000);
}

const enc = encodeURIComponent;
const short = (id) => (id.length > 12 ? id.slice(-8) : id);
const json = (value) => JSON.stringify(value, null, 2);
const when = (seconds) => (seconds ? new Date(seconds * 1000).toLocaleString() : "");

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 0.001) return "<1 ms";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function badge(status) {
  return el("span", { class: `badge ${status}`, "data-status": status }, status);
}

function folded(value) {
  const text = typeof value === "string" ? value : json(value);
  if (text === undefined) return el("span", { class: "muted" }, "(none)");
  if (text.length <= FOLD) return el("pre", {}, text);
  return el("details", { class: "fold" }, el("summary", {}, `${text.slice(0, 100)}… (${text.length} characters)`),
    el("pre", {}, text));
}

function put(node, ...kids) {
  // replaceChildren would show a null as the text "null": only real children go in
  node.replaceChildren(...kids.flat(Infinity).filter((kid) => kid !== null && kid !== undefined && kid !== false)
    .map((kid) => (kid instanceof Node ? kid : document.createTextNode(String(kid)))));
  return node;
}

function main() {
  // a fresh holder per page: a page still loading when another was asked for fills a holder no one shows
  const holder = el("div", {});
  put(document.getElementById("main"), holder);
  return holder;
}

// -- diagrams ------------------------------------------------------------------------------------------------

let mermaidReady = null;
let mermaidStarted = false;

function scrub(root) {
  // Mermaid sanitizes labels itself (securityLevel strict); this is the second lock on the door
  for (const bad of root.querySelectorAll("script, iframe, object, embed, link, meta")) bad.remove();
  for (const node of [root, ...root.querySelectorAll("*")]) {
    for (const attribute of [...node.attributes]) {
      const name = attribute.name.toLowerCase();
      const value = attribute.value.replace(/\s+/g, "").toLowerCase();
      if (name.startsWith("on") || ((name === "href" || name.endsWith(":href") || name === "src")
          && !value.startsWith("#"))) node.removeAttribute(attribute.name);
    }
  }
}

function mermaidLoaded() {
  // Mermaid is 3.5 MB of JavaScript: fetched (from this server) the first time a diagram is drawn, not by
  // pages that draw none
  if (!mermaidReady) {
    mermaidReady = new Promise((resolve, reject) => {
      const script = el("script", { src: "/static/vendor/mermaid.min.js" });
      script.onload = resolve;
      script.onerror = () => reject(new Error("Mermaid could not be loaded"));
      document.head.append(script);
    });
  }
  return mermaidReady;
}

async function draw(container, source) {
  await mermaidLoaded();
  if (!mermaidStarted) {
    mermaidStarted = true;
    window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "default",
      state: { useMaxWidth: true } });
  }
  const { svg } = await window.mermaid.render(`diagram-${++ui.drawn}`, source);
  const parsed = new DOMParser().parseFromString(svg, "text/html");  // an inert document: nothing runs or loads
  const root = parsed.querySelector("svg");
  scrub(root);
  put(container, document.importNode(root, true));
  return container.querySelector("svg");
}

function stateNodes(svg, nodeIds) {
  // Mermaid names a state's node `...-<id>-<n>`; map each state to its node
  const found = {};
  const nodes = [...svg.querySelectorAll("g.node")];
  for (const [state, id] of Object.entries(nodeIds || {})) {
    const node = nodes.find((candidate) => candidate.id === id || candidate.id.includes(`-${id}-`)
      || candidate.id.endsWith(`-${id}`));
    if (node) { node.dataset.state = state; found[state] = node; }
  }
  return found;
}

function highlight(nodes, visits, current, status) {
  for (const [state, node] of Object.entries(nodes)) {
    const seen = (visits[state] || 0) > 0;
    node.classList.toggle("current", state === current);
    node.classList.toggle("failed", state === current && status === "failed");
    node.classList.toggle("visited", seen && state !== current);
    node.classList.toggle("unvisited", !seen && state !== current);
    node.setAttribute("data-visits", String(visits[state] || 0));
  }
}

// -- the runs page ---------------------------------------------------------------------------------------------

function runRow(run, depth) {
  const name = el("td", { class: "mono" }, el("a", { href: `#/runs/${enc(run.run_id)}`, title: run.run_id },
    depth ? `${run.child_name || ""} ${short(run.run_id)}` : short(run.run_id)));
  if (depth) name.style.paddingLeft = `${8 + 20 * depth}px`;
  return el("tr", { class: depth ? "child" : "", "data-run": run.run_id, "data-depth": depth }, name,
    el("td", {}, run.machine),
    el("td", {}, badge(run.status), run.owner_gone ? el("span", { class: "muted" }, " (owner gone)") : null),
    el("td", {}, run.branch),
    el("td", {}, when(run.created_at)),
    el("td", { class: "num" }, duration(run.duration)),
    el("td", { class: "num" }, run.steps),
    el("td", { class: "num" }, run.tokens || ""),
    el("td", { class: "num", title: run.unpriced && run.unpriced.length ? `no price for: ${run.unpriced.join(", ")}` : "" },
      usd(run.cost, run.unpriced)));
}

// USD for a person: two significant digits of a small amount; "?" for calls of a model without a price.
function usd(cost, unpriced) {
  const unknown = unpriced && unpriced.length ? "?" : "";
  if (cost === null || cost === undefined) return unknown;
  const shown = cost === 0 ? "0" : cost < 0.01 ? cost.toPrecision(2) : cost.toFixed(cost < 100 ? 4 : 2);
  return `$${shown}${unknown ? " + ?" : ""}`;
}

// A run's row and its children's, at every level: a toggle shows a run's children; closing it hides them all.
// `opened` (run ids) survives the table being drawn again by a live update.
function runRows(run, depth, opened) {
  const head = runRow(run, depth);
  const groups = (run.children || []).map((kid) => runRows(kid, depth + 1, opened));
  const group = { head, rows: [head, ...groups.flatMap((kid) => kid.rows)], show: (shown) => { head.hidden = !shown; } };
  if (!groups.length) return group;
  const toggle = el("button", { class: "small fold", title: "show its child runs" });
  const unfold = (open) => {
    if (open) opened.add(run.run_id); else opened.delete(run.run_id);
    toggle.textContent = `${open ? "▾" : "▸"} ${groups.length}`;
    for (const kid of groups) kid.show(open);
  };
  toggle.onclick = () => unfold(!opened.has(run.run_id));
  group.show = (shown) => {  // a row hidden hides its children too; shown again, they come back as they were
    head.hidden = !shown;
    for (const kid of groups) kid.show(shown && opened.has(run.run_id));
  };
  head.firstChild.append(" ", toggle);
  unfold(opened.has(run.run_id));
  return group;
}

function runsTable(page, opened) {
  const body = el("tbody", {});
  for (const run of page.runs) body.append(...runRows(run, 0, opened).rows);
  if (!page.runs.length) body.append(el("tr", {}, el("td", { colspan: 9, class: "muted" }, "no runs")));
  return el("table", { id: "runs" }, el("thead", {}, el("tr", {}, ["run", "machine", "status", "branch", "started",
    "duration", "steps", "tokens", "cost"].map((name, i) => el("th", { class: i >= 5 ? "num" : "" }, name)))), body);
}

async function showRuns(query) {
  const status = query.get("status") || "";
  const machine = query.get("machine") || "";
  const cursor = query.get("cursor") || "";
  const root = main();
  const go = (changes) => {
    const next = new URLSearchParams({ status, machine, ...changes });
    for (const [key, value] of [...next]) if (!value) next.delete(key);
    location.hash = `#/runs?${next}`;
  };
  const statusBox = el("select", { id: "filter-status", onchange: () => go({ status: statusBox.value }) },
    el("option", { value: "" }, "any status"));
  const machineBox = el("input", { type: "text", id: "filter-machine", placeholder: "machine name", value: machine,
    onchange: () => go({ machine: machineBox.value.trim() }) });
  const holder = el("div", { class: "card" });
  const pager = el("div", { class: "pager" });
  root.append(el("h1", {}, "Runs"), el("div", { class: "bar" }, statusBox, machineBox), holder, pager);
  const params = new URLSearchParams({ status, machine, cursor });
  const opened = new Set();
  const render = (page) => {
    put(holder, runsTable(page, opened));
    put(pager,
      cursor ? el("button", { onclick: () => history.back() }, "← newer") : null,
      page.cursor ? el("button", { id: "older", onclick: () => go({ cursor: page.cursor }) }, "older →") : null);
  };
  const first = await api(`/api/runs?${params}`);
  statusBox.append(...first.statuses.map((name) => el("option", { value: name }, name)));
  statusBox.value = status;
  render(first);
  listen(root, `/api/live/runs?${params}`, "runs", render);
}

// -- a run's page ------------------------------------------------------------------------------------------------

async function showRun(runId, query) {
  const branch = query.get("branch") || "";
  const root = main();
  mermaidLoaded().catch(() => {});  // fetched while the run is read; a failure shows where the diagram goes
  const view = await api(`/api/runs/${enc(runId)}${branch ? `?branch=${enc(branch)}` : ""}`);
  const run = view.run;
  const page = { view, run, nodes: {}, visits: { ...view.visits }, current: view.current, selected: null };
  const onHead = view.branch === run.branch;

  const title = el("h1", {});
  const actions = el("div", { class: "bar" });
  const diagram = el("div", { class: "diagram", id: "diagram" }, el("span", { class: "muted" }, "drawing…"));
  const timeline = el("div", { class: "scroll", id: "timeline" });
  const pager = el("div", { class: "pager" });
  const detail = el("div", { id: "step" }, el("span", { class: "muted" }, "select a step"));
  const side = el("div", {});
  root.append(title, actions, el("div", { class: "grid" },
    el("div", {}, el("div", { class: "card" }, el("h2", {}, "Diagram"), diagram), side),
    el("div", {}, el("div", { class: "card" }, el("h2", {}, "Steps"), timeline, pager),
      el("div", { class: "card" }, el("h2", {}, "Step"), detail))));

  const header = () => {
    const choose = el("select", { id: "branch", title: "branch shown", onchange: () => {
      location.hash = `#/runs/${enc(run.run_id)}?branch=${enc(choose.value)}`;
    } }, view.branches.map((known) => el("option", { value: known.name },
      known.name === page.run.branch ? `${known.name} (head)` : known.name)));
    choose.value = view.branch;
    put(title, el("span", {}, "Run"), el("span", { class: "mono", id: "run-id" }, run.run_id),
      el("span", { id: "run-status" }, badge(page.run.status)), el("span", { class: "muted" }, page.run.machine),
      el("span", { class: "muted" }, "branch"), choose,
      el("span", { class: "muted" }, `${page.run.steps} step${page.run.steps === 1 ? "" : "s"} · ${duration(page.run.duration)}`
        + (page.run.tokens ? ` · ${page.run.tokens} tokens` : "")
        + (view.cost && view.cost.tokens ? ` · ${view.cost.cost === null ? "no price" : usd(view.cost.cost, view.cost.unpriced)}` : "")));
    // the actions change with the run's status only: redrawing them on every step would wipe what is typed
    const key = JSON.stringify([page.run.status, page.run.waiting, page.run.error]);
    if (actions.dataset.key !== key) {
      actions.dataset.key = key;
      put(actions, ...runActions(page, onHead));
    }
  };
  header();
  side.append(checkpointsCard(view), breakpointsCard(view));
  drawRun(page, diagram);
  const steps = await stepsList(page, timeline, pager, detail, null);
  if (!onHead) return;
  listen(root, `/api/live/runs/${enc(run.run_id)}?steps=${view.last_step}&head=${enc(view.branch)}`, "change",
    (change) => {
      if (change.reset) { route(); return; }
      page.run = change.run;
      for (const step of change.steps) {
        if (step.state) page.visits[step.state] = (page.visits[step.state] || 0) + 1;
        page.current = step.next_state || step.state;
        steps.add(step);
      }
      if (page.run.status === "waiting" && page.run.waiting) page.current = page.run.waiting.state;
      highlight(page.nodes, page.visits, page.current, page.run.status);
      header();
      if (change.steps.length) recount(page, diagram);
    });
}

function recount(page, diagram) {
  // the arrows' counts change with the steps: the diagram is read and drawn again, at most once a second
  if (page.recounting) { page.recountAgain = true; return; }
  page.recounting = setTimeout(async () => {
    try {
      const view = await api(`/api/runs/${enc(page.run.run_id)}?branch=${enc(page.view.branch)}`);
      if (view.diagram && view.diagram !== page.view.diagram) {
        page.view.diagram = view.diagram;
        await drawRun(page, diagram);
      }
    } catch (error) { /* the next change tries again */ }
    page.recounting = null;
    if (page.recountAgain) { page.recountAgain = false; recount(page, diagram); }
  }, 1000);
}

async function drawRun(page, diagram) {
  if (!page.view.diagram) {
    put(diagram, el("span", { class: "muted" }, "this run's machine was built in Python: no diagram"));
    return;
  }
  try {
    const svg = await draw(diagram, page.view.diagram);
    page.nodes = stateNodes(svg, page.view.node_ids);
    highlight(page.nodes, page.visits, page.current, page.run.status);
  } catch (error) {
    put(diagram, el("span", { class: "error" }, `the diagram could not be drawn: ${error.message}`));
  }
}

function runActions(page, onHead) {
  const run = page.run;
  const act = async (path, body, done) => {
    try {
      const answer = await api(`/api/runs/${enc(run.run_id)}/${path}`, body || {});
      done ? done(answer) : toast(`${path}: run is ${answer.run.status}`);
    } catch (error) { toast(error.message, true); }
  };
  const items = [];
  if (!onHead) {
    items.push(el("span", { class: "muted" }, "showing a branch that is not the head: read only"));
    return items;
  }
  if (run.status === "waiting" && run.waiting) items.push(waitForm(run, act));
  if (["paused", "running"].includes(run.status)) {
    items.push(el("button", { id: "resume", onclick: () => act("resume") }, "Resume"));
  }
  if (!FINISHED.includes(run.status)) {
    items.push(el("button", { id: "cancel", class: "danger", onclick: () => act("cancel") }, "Cancel"));
  }
  if (run.error) items.push(el("span", { class: "error", id: "run-error" }, `${run.error.type}: ${run.error.message}`));
  if (run.status === "succeeded") items.push(el("span", { class: "muted" }, "output:"), folded(run.output));
  return items;
}

function waitForm(run, act) {
  const events = run.waiting.events || [];
  const choose = el("select", { id: "send-event" }, events.map((name) => el("option", { value: name }, name)));
  const data = el("input", { type: "text", id: "send-data", size: 36,
    placeholder: "data as JSON (optional): {\"by\": \"ada\"}" });
  const problem = el("span", { class: "error", id: "send-problem" });
  const send = () => {
    let value = null;
    if (data.value.trim()) {
      try { value = JSON.parse(data.value); } catch (error) {
        problem.textContent = `data is not JSON: ${error.message}`;
        return;
      }
    }
    problem.textContent = "";
    act("send", { event: choose.value, data: value }, () => toast(`sent ${choose.value}`));
  };
  return el("div", { class: "card wait", id: "wait-form" },
    el("div", { class: "form-row" }, el("strong", {}, `Waiting in ${run.waiting.state}`),
      el("label", { for: "send-event" }, "event"), choose, data,
      el("button", { class: "primary", id: "send", onclick: send }, "Send"),
      run.waiting.deadline ? el("span", { class: "muted" }, `timer due ${when(run.waiting.deadline)}`) : null),
    problem);
}

function checkpointsCard(view) {
  const list = el("table", { id: "checkpoints" }, el("tbody", {}, view.checkpoints.map((point) => el("tr", {},
    el("td", {}, point.name), el("td", { class: "muted" }, `${point.branch} @ ${point.step}`),
    el("td", {}, el("button", { class: "small", onclick: () => rollback(view.run.run_id, point.name, false) },
      "roll back here"))))));
  const branches = el("table", { id: "branches" }, el("tbody", {}, view.branches.map((known) => el("tr", {},
    el("td", {}, el("a", { href: `#/runs/${enc(view.run.run_id)}?branch=${enc(known.name)}` }, known.name)),
    el("td", { class: "muted" }, known.parent ? `from ${known.parent} at step ${known.fork}` : "")))));
  const family = [];
  if (view.run.parent_run) {
    family.push(el("h2", { style: "margin-top:12px" }, "Parent run"), el("a", { id: "parent-run",
      href: `#/runs/${enc(view.run.parent_run)}` }, view.run.parent_run), ` (as ${view.run.child_name || "?"})`);
  }
  if (view.children.length) {
    family.push(el("h2", { style: "margin-top:12px" }, "Child runs"), el("table", { id: "children" },
      el("tbody", {}, view.children.map((kid) => el("tr", {},
        el("td", {}, el("a", { href: `#/runs/${enc(kid.run_id)}` }, kid.child_name || short(kid.run_id))),
        el("td", {}, kid.machine), el("td", {}, badge(kid.status)), el("td", { class: "num" }, kid.steps))))));
  }
  return el("div", { class: "card" }, el("h2", {}, "Branches"), branches, el("h2", { style: "margin-top:12px" },
    "Checkpoints"), view.checkpoints.length ? list : el("span", { class: "muted" }, "none"), family);
}

function breakpointsCard(view) {
  // pause the run before a state (STATE or STATE:GUARD): the same service call as `agentfsm break RUN STATE`
  const runId = view.run.run_id;
  const list = el("ul", { id: "breakpoints" });
  const input = el("input", { type: "text", id: "breakpoint-input", size: 24, placeholder: "STATE or STATE:GUARD",
    list: "breakpoint-states" });
  const states = el("datalist", { id: "breakpoint-states" }, view.states.map((name) => el("option", { value: name })));
  const problem = el("span", { class: "error", id: "breakpoint-problem" });
  const show = (kept) => put(list, kept.length ? kept.map((text, index) => el("li", { "data-breakpoint": text },
    el("span", { class: "mono" }, text), " ", el("button", { class: "small", id: `breakpoint-remove-${index}`,
      onclick: () => change(text, true) }, "remove"))) : el("li", { class: "muted" }, "none"));
  const change = async (text, remove) => {
    try {
      const answer = await api(`/api/runs/${enc(runId)}/breakpoints`, { breakpoint: text, remove });
      problem.textContent = "";
      if (!remove) input.value = "";
      show(answer.kept);
    } catch (error) { problem.textContent = error.message; }
  };
  show(view.breakpoints || []);
  return el("div", { class: "card", id: "breakpoints-card" }, el("h2", {}, "Breakpoints"),
    el("div", { class: "muted" }, "the run pauses before entering these states; resume goes on"), list,
    el("div", { class: "form-row" }, input, states,
      el("button", { id: "breakpoint-add", onclick: () => change(input.value.trim(), false) }, "Add")), problem);
}

async function rollback(runId, to, resume, branchName) {
  try {
    const made = await api(`/api/runs/${enc(runId)}/rollback`, { to, resume, branch: branchName || null });
    toast(`branch ${made.branch} starts at step ${made.step} (state ${made.state})`);
    go(`#/runs/${enc(runId)}`);
  } catch (error) { toast(error.message, true); }
}

async function stepsList(page, timeline, pager, detail, first) {
  const view = page.view;
  const query = new URLSearchParams({ branch: view.branch });
  if (first !== null) query.set("first", first);
  const window = await api(`/api/runs/${enc(view.run.run_id)}/steps?${query}`);
  const body = el("tbody", {});
  const add = (step) => {
    const row = el("tr", { class: "selectable", "data-step": step.step, onclick: () => {
      for (const other of body.querySelectorAll("tr.selected")) other.classList.remove("selected");
      row.classList.add("selected");
      showStep(page, step.step, detail);
    } },
      el("td", { class: "num" }, step.step), el("td", {}, step.state || ""), el("td", {}, step.event || ""),
      el("td", {}, step.next_state || el("span", { class: "muted" }, "(end)")),
      el("td", { class: "num" }, duration(step.duration)), el("td", { class: "num" }, step.retries || ""),
      el("td", { class: "error" }, step.error ? `${step.error.type}: ${step.error.message}` : ""));
    body.append(row);
  };
  for (const step of window.steps) add(step);
  put(timeline, el("table", {}, el("thead", {}, el("tr", {}, ["#", "state", "event", "next", "took",
    "retries", "error"].map((name) => el("th", {}, name)))), body));
  let last = window.last_step;
  const end = window.first + window.steps.length - 1;
  const size = 100;
  put(pager,
    window.first > 1 ? el("button", { onclick: () => stepsList(page, timeline, pager, detail,
      Math.max(1, window.first - size)) }, "← earlier") : null,
    el("span", { class: "muted" }, window.steps.length ? `steps ${window.first}–${end} of ${last}` : "no steps yet"),
    end < last ? el("button", { onclick: () => stepsList(page, timeline, pager, detail, end + 1) }, "later →")
      : null,
    last > size ? jump(last, async (number) => {
      await stepsList(page, timeline, pager, detail, number);
      timeline.querySelector(`tr[data-step="${number}"]`)?.click();
    }) : null);
  const live = end >= last;
  return { add: (step) => { if (live) { add(step); timeline.scrollTop = timeline.scrollHeight; } last = step.step; } };
}

function jump(last, go) {
  // a long run's steps are read 100 at a time: go straight to one of them
  const box = el("input", { type: "number", id: "goto-step", min: 1, max: last, placeholder: "step", style: "width: 90px" });
  const submit = () => {
    const number = Number(box.value);
    if (Number.isInteger(number) && number >= 1 && number <= last) go(number);
  };
  box.addEventListener("keydown", (event) => { if (event.key === "Enter") submit(); });
  return el("span", { class: "grow" }, " ", box, " ", el("button", { class: "small", onclick: submit }, "go"));
}

async function showStep(page, number, detail) {
  const view = page.view;
  detail.dataset.want = String(number);
  let step, failed = null;
  try {
    step = await api(`/api/runs/${enc(view.run.run_id)}/steps/${number}?branch=${enc(view.branch)}`);
  } catch (error) { failed = error.message; }
  if (detail.dataset.want !== String(number)) return;  // another step was chosen meanwhile: its answer wins
  detail.dataset.step = String(number);
  if (failed !== null) { put(detail, el("span", { class: "error" }, failed)); return; }
  const resume = el("input", { type: "checkbox", id: "rollback-resume" });
  const name = el("input", { type: "text", id: "rollback-branch", placeholder: "new branch (default rollback-N)" });
  const sections = [
    el("div", { class: "kv" },
      el("span", { class: "k" }, "state"), el("span", {}, step.state || ""),
      el("span", { class: "k" }, "event"), el("span", {}, step.event || ""),
      el("span", { class: "k" }, "next"), el("span", {}, step.next_state || "(end)"),
      el("span", { class: "k" }, "took"), el("span", {}, duration(step.duration)),
      el("span", { class: "k" }, "retries"), el("span", {}, step.retries),
      step.error ? [el("span", { class: "k" }, "error"), el("span", { class: "error" },
        `${step.error.type}: ${step.error.message}`)] : null),
    el("div", { class: "bar", style: "margin-top:8px" },
      el("button", { id: "rollback", onclick: () => rollback(view.run.run_id, `${view.branch}@${number}`,
        resume.checked, name.value.trim()) }, `Roll back to before step ${number}`),
      name, el("label", {}, resume, " re-run from here")),
  ];
  if (step.event_data !== null && step.event_data !== undefined) {
    sections.push(el("h2", {}, "Event data"), folded(step.event_data));
  }
  if (step.result !== null && step.result !== undefined) sections.push(el("h2", {}, "Result"), folded(step.result));
  if (step.llm_exchanges.length) {
    sections.push(el("h2", {}, "LLM exchanges"), ...step.llm_exchanges.map(exchange));
  } else if (step.llm_calls.length) {
    sections.push(el("h2", {}, "LLM calls"), el("table", {}, el("tbody", {}, step.llm_calls.map((call) => el("tr", {},
      el("td", {}, call.binding), el("td", {}, call.model || ""),
      el("td", { class: "num" }, `${call.prompt_tokens} + ${call.completion_tokens} tokens`),
      el("td", { class: "num" }, duration(call.duration)),
      el("td", { class: "error" }, call.error ? call.error.message : ""))))));
  }
  if (step.tool_calls.length) {
    sections.push(el("h2", {}, "Tool calls"), el("table", {}, el("tbody", {}, step.tool_calls.map((call) => el("tr", {},
      el("td", {}, call.binding), el("td", {}, folded(call.args)), el("td", {}, "result" in call ? folded(call.result)
        : ""), el("td", { class: "num" }, duration(call.duration)))))));
  }
  sections.push(el("h2", {}, "Context after this step"), contextTable(step));
  put(detail, ...sections);
}

function exchange(call) {
  // one llm_call trace entry: who answered and what it cost, then the messages sent and the reply, as text
  const request = call.request || {};
  const reply = call.reply || {};
  const lines = [];
  if (request.system) lines.push(el("div", { class: "msg" }, el("span", { class: "role" }, "system"), folded(request.system)));
  for (const message of request.messages || []) {
    lines.push(el("div", { class: "msg" }, el("span", { class: "role" }, message.role),
      folded(message.content ?? ""),
      (message.tool_calls || []).map((asked) => el("div", { class: "muted" }, `calls ${asked.name}`, folded(asked.arguments))),
      (message.tool_results || []).map((given) => el("div", { class: "muted" }, `result of ${given.name}`,
        folded(given.content)))));
  }
  lines.push(el("div", { class: "msg reply" }, el("span", { class: "role" }, "reply"),
    call.error ? el("span", { class: "error" }, `${call.error.type}: ${call.error.message}`) : folded(reply.text ?? ""),
    (reply.tool_calls || []).map((asked) => el("div", { class: "muted" }, `asks for ${asked.name}`,
      folded(asked.arguments)))));
  return el("div", { class: "exchange" },
    el("div", { class: "muted" }, `${call.binding} · ${call.model || "?"} · ${call.prompt_tokens} + `
      + `${call.completion_tokens} tokens · ${duration(call.duration)}${call.retries ? ` · ${call.retries} retries` : ""}`),
    lines);
}

function contextTable(step) {
  const rows = [];
  const keys = [...new Set([...Object.keys(step.context), ...Object.keys(step.removed)])].sort();
  for (const key of keys) {
    let mark = "", shown;
    if (key in step.added) { mark = "diff-added"; shown = folded(step.context[key]); }
    else if (key in step.removed) { mark = "diff-removed"; shown = folded(step.removed[key]); }
    else if (key in step.changed) {
      mark = "diff-changed";
      shown = el("div", {}, folded(step.changed[key].old), el("span", { class: "muted" }, "→"),
        folded(step.changed[key].new));
    } else shown = folded(step.context[key]);
    rows.push(el("tr", { class: mark, "data-key": key }, el("td", { class: "mono" }, key), el("td", {}, shown)));
  }
  return el("table", { id: "context" }, el("tbody", {}, rows.length ? rows
    : el("tr", {}, el("td", { class: "muted" }, "(empty)"))));
}

// -- machines ------------------------------------------------------------------------------------------------------

async function showMachines() {
  const root = main();
  const found = await api("/api/machines");
  root.append(el("h1", {}, "Machines"), el("p", { class: "muted" }, `YAML files in ${found.root}`),
    el("ul", { class: "files card" }, found.files.map((path) => el("li", {},
      el("a", { href: `#/machines/${path.split("/").map(enc).join("/")}` }, path)))));
}

async function showMachine(path) {
  const root = main();
  const machine = await api(`/api/machines/${path.split("/").map(enc).join("/")}`);
  root.append(el("h1", {}, el("span", { class: "mono" }, machine.path), machine.name ? el("span", { class: "muted" },
    machine.name) : null));
  if (machine.description) root.append(el("p", {}, machine.description));
  const problems = machine.problems.length
    ? el("ul", { class: "problems", id: "problems" }, machine.problems.map((found) => el("li", {
      class: found.severity === "error" ? "error" : "" }, found.text)))
    : el("p", { class: "muted" }, "no problems");
  const diagram = el("div", { class: "diagram" });
  const form = machine.valid ? inputsForm(machine) : el("p", { class: "muted" }, "fix the problems to run it");
  root.append(el("div", { class: "grid" }, el("div", { class: "card" }, el("h2", {}, "Diagram"), diagram),
    el("div", {}, el("div", { class: "card" }, el("h2", {}, "Problems"), problems),
      el("div", { class: "card" }, el("h2", {}, "Start a run"), form))));
  if (machine.diagram) {
    try { await draw(diagram, machine.diagram); } catch (error) {
      put(diagram, el("span", { class: "error" }, error.message));
    }
  }
}

function inputsForm(machine) {
  const fields = Object.entries(machine.inputs).map(([name, spec]) => {
    let box;
    if (spec.type === "boolean") box = el("input", { type: "checkbox", checked: spec.default === true });
    else if (spec.type === "integer" || spec.type === "number") {
      box = el("input", { type: "number", step: spec.type === "integer" ? "1" : "any",
        value: spec.default ?? "" });
    } else if (spec.type === "string") box = el("input", { type: "text", value: spec.default ?? "", size: 40 });
    else box = el("textarea", { rows: 2, placeholder: "JSON", value: spec.default == null ? "" : json(spec.default) });
    box.name = name;
    const read = () => {
      if (spec.type === "boolean") return box.checked;
      if (box.value === "") return undefined;
      if (spec.type === "integer" || spec.type === "number") return Number(box.value);
      if (spec.type === "string") return box.value;
      return JSON.parse(box.value);
    };
    return { name, read, row: el("div", { class: "form-row" }, el("label", {}, name, spec.required ? " *" : ""), box,
      el("span", { class: "muted" }, [spec.type, spec.description].filter(Boolean).join(" · "))) };
  });
  const problem = el("div", { class: "error", id: "start-problem" });
  const start = async () => {
    const inputs = {};
    try {
      for (const field of fields) { const value = field.read(); if (value !== undefined) inputs[field.name] = value; }
    } catch (error) { problem.textContent = `an input is not JSON: ${error.message}`; return; }
    try {
      const answer = await api(`/api/machines/${machine.path.split("/").map(enc).join("/")}/start`, { inputs });
      location.hash = `#/runs/${enc(answer.run.run_id)}`;
    } catch (error) { problem.textContent = error.message; }
  };
  return el("div", { id: "start-form" }, fields.map((field) => field.row),
    fields.length ? null : el("p", { class: "muted" }, "this machine takes no inputs"),
    el("button", { class: "primary", id: "start", onclick: start }, "Start"), problem);
}

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

// -- routing ---------------------------------------------------------------------------------------------------------

async function route() {
  stopStreams();
  const [path, search] = (location.hash.slice(1) || "/runs").split("?");
  const query = new URLSearchParams(search || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  document.getElementById("nav-runs").classList.toggle("on", parts[0] !== "machines");
  document.getElementById("nav-machines").classList.toggle("on", parts[0] === "machines");
  try {
    if (parts[0] === "machines" && parts.length > 1) await showMachine(parts.slice(1).join("/"));
    else if (parts[0] === "machines") await showMachines();
    else if (parts[0] === "runs" && parts[1]) await showRun(parts[1], query);
    else await showRuns(query);
  } catch (error) {
    main().append(el("p", { class: "error", id: "page-error" }, error.message));
  }
  document.body.dataset.ready = String(Date.now());
}

window.addEventListener("hashchange", route);
route();
