// ClaimOps UI: keeps server-rendered pages live. Listens to /events (Server-Sent Events fed by a
// Kubernetes watch) and swaps in server-rendered fragments; the claims page reads /ws/claims.
"use strict";

(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const announce = (text) => { const el = $("#live-status"); if (el) el.textContent = text; };

  // One fetch per key at a time; a change that arrives meanwhile triggers one more fetch.
  const inflight = new Map();
  function refresh(key, url, apply) {
    const state = inflight.get(key);
    if (state) { state.again = true; return; }
    const entry = { again: false };
    inflight.set(key, entry);
    fetch(url, { headers: { Accept: "text/html" } })
      .then((r) => (r.ok ? r.text() : null))
      .then((html) => { if (html !== null) apply(html); })
      .catch(() => {})
      .finally(() => {
        inflight.delete(key);
        if (entry.again) refresh(key, url, apply);
      });
  }

  function fragment(html) {
    const t = document.createElement("template");
    t.innerHTML = html.trim();
    return t.content.firstElementChild;
  }

  // ---- runs list -------------------------------------------------------------------------
  function onRunEvent(ev) {
    const body = $("#runs-body");
    if (body) {
      const row = document.getElementById("run-" + ev.name);
      if (ev.type === "DELETED") { if (row) row.remove(); return; }
      if (row && row.dataset.version === ev.resourceVersion) return;
      refresh("row-" + ev.name, "/ui/fragments/runs/" + encodeURIComponent(ev.name) + "/row", (html) => {
        const fresh = fragment(html);
        const current = document.getElementById("run-" + ev.name);
        if (current) current.replaceWith(fresh);
        else { body.prepend(fresh); const none = $("#no-runs"); if (none) none.remove(); }
      });
    }
    const live = $("#run-live");
    if (live && live.dataset.run === ev.name && live.dataset.version !== ev.resourceVersion) refreshRun(live.dataset.run);
  }

  // ---- run detail ------------------------------------------------------------------------
  function currentStage() { const i = $("#inspector"); return i ? i.dataset.stage : ""; }
  function currentTab() { const i = $("#inspector"); return i ? i.dataset.tab : "code"; }

  function refreshRun(name) {
    const url = "/ui/fragments/runs/" + encodeURIComponent(name) + "/live?stage=" + encodeURIComponent(currentStage());
    refresh("live-" + name, url, (html) => {
      const old = $("#run-live");
      if (!old) return;
      const fresh = fragment(html);
      // Keep what the user is typing in the approval comment.
      const typed = $("#approval-comment", old);
      const keep = $("#approval-comment", fresh);
      if (typed && keep) keep.value = typed.value;
      const before = old.querySelector('.node[data-stage="' + currentStage() + '"]');
      const after = fresh.querySelector('.node[data-stage="' + currentStage() + '"]');
      const stageChanged = !before || !after || before.dataset.state !== after.dataset.state;
      const phase = $("#run-phase", fresh);
      old.replaceWith(fresh);
      bindDag();
      if (phase) announce("Run " + name + " is " + phase.textContent);
      if (stageChanged && currentTab() !== "code") loadInspector(currentStage(), currentTab(), false);
    });
  }

  function loadInspector(stage, tab, push) {
    const box = $("#inspector");
    if (!box) return;
    const run = box.dataset.run;
    const url = "/ui/fragments/runs/" + encodeURIComponent(run) + "/inspector/" + encodeURIComponent(stage) + "?tab=" + encodeURIComponent(tab);
    refresh("inspector", url, (html) => {
      box.innerHTML = html;
      box.dataset.stage = stage;
      box.dataset.tab = tab;
      const select = $("#stage-select");
      if (select) select.value = stage;
      document.querySelectorAll(".node").forEach((n) => {
        const on = n.dataset.stage === stage;
        n.classList.toggle("selected", on);
        if (on) n.setAttribute("aria-current", "step"); else n.removeAttribute("aria-current");
      });
      const live = $("#run-live");
      if (live) live.dataset.stage = stage;
      if (push) history.replaceState(null, "", "/ui/runs/" + run + "?stage=" + stage + "&tab=" + tab);
    });
  }

  function bindDag() {
    document.querySelectorAll(".node").forEach((node) => {
      node.addEventListener("click", (e) => {
        if (!$("#inspector")) return;
        e.preventDefault();
        loadInspector(node.dataset.stage, currentTab(), true);
      });
    });
  }

  function bindInspector() {
    const box = $("#inspector");
    if (!box) return;
    box.addEventListener("click", (e) => {
      const tab = e.target.closest("[role=tab]");
      if (!tab) return;
      e.preventDefault();
      loadInspector(currentStage(), tab.dataset.tab, true);
    });
    const select = $("#stage-select");
    if (select) select.addEventListener("change", () => loadInspector(select.value, currentTab(), true));
    // Logs of a running stage grow without a status change: poll while one is shown.
    setInterval(() => {
      const node = document.querySelector('.node[data-stage="' + currentStage() + '"]');
      if (currentTab() === "logs" && node && node.dataset.state === "Running") loadInspector(currentStage(), "logs", false);
    }, 2000);
  }

  // ---- deployments -----------------------------------------------------------------------
  function onDeploymentEvent() {
    if ($("#deployments-live")) {
      refresh("deployments", "/ui/fragments/deployments", (html) => { $("#deployments-live").replaceWith(fragment(html)); });
    }
  }

  function connectEvents() {
    if (!window.EventSource || document.body.dataset.page === "claims") return;
    const source = new EventSource("/events");
    source.onopen = () => {
      document.body.classList.add("live");
      // A change between this page's render and the stream's (re)connection sent no event
      // to us (a cancel the operator finished while the page reloaded): fetch it once now.
      const live = $("#run-live");
      if (live) refreshRun(live.dataset.run);
    };
    source.onerror = () => document.body.classList.remove("live");
    source.addEventListener("pipelineruns", (m) => onRunEvent(JSON.parse(m.data)));
    source.addEventListener("modeldeployments", (m) => onDeploymentEvent(JSON.parse(m.data)));
    window.addEventListener("pagehide", () => source.close());
  }

  // ---- claims stream ---------------------------------------------------------------------
  const SVG = "http://www.w3.org/2000/svg";
  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function drawDrift(drift) {
    const chart = $("#psi-chart");
    if (!chart || !drift) return;
    chart.querySelectorAll(":not(desc)").forEach((n) => n.remove());
    const entries = Object.entries(drift.psi);
    const max = Math.max(0.5, drift.threshold * 1.5, ...entries.map(([, v]) => v));
    const left = 120, width = 360, rowH = 30;
    entries.forEach(([name, value], i) => {
      const y = 14 + i * rowH;
      const w = Math.max(1, (value / max) * width);
      const drifted = drift.judged && value > drift.threshold;
      chart.append(el("text", { x: left - 8, y: y + 14, "text-anchor": "end" }, name));
      chart.append(el("rect", { x: left, y: y, width: w, height: 18, class: "bar" + (drifted ? " drifted" : "") }));
      chart.append(el("text", { x: left + w + 6, y: y + 14 }, value.toFixed(3)));
    });
    const tx = left + (drift.threshold / max) * width;
    chart.append(el("line", { x1: tx, x2: tx, y1: 6, y2: 14 + entries.length * rowH, class: "threshold" }));
    chart.append(el("text", { x: tx + 4, y: 14 + entries.length * rowH + 10 }, "PSI " + drift.threshold));
    const verdict = $("#drift-verdict");
    if (!drift.judged) {
      verdict.textContent = "Warming up: " + drift.windowRows + " claims so far";
      verdict.className = "pill";
      verdict.dataset.drifted = "unknown";
    } else {
      verdict.textContent = drift.drifted ? "Drift detected: " + drift.driftedFeatures.join(", ") : "No drift (max PSI " + drift.maxPsi.toFixed(3) + ")";
      verdict.className = "pill " + (drift.drifted ? "drifted" : "stable");
      verdict.dataset.drifted = drift.drifted ? "true" : "false";
    }
    verdict.dataset.profile = drift.profile || "";
    $("#psi-window").textContent = drift.windowRows + " claims in the window vs " + drift.referenceRows + " reference";
    const tbody = $("#psi-table tbody");
    tbody.innerHTML = "";
    entries.forEach(([name, value]) => {
      const tr = document.createElement("tr");
      const th = document.createElement("th"); th.scope = "row"; th.textContent = name;
      const td = document.createElement("td"); td.textContent = value.toFixed(4); td.dataset.feature = name;
      tr.append(th, td); tbody.append(tr);
    });
  }

  function addClaims(claims) {
    const body = $("#claims-body");
    if (!body || !claims) return;
    claims.slice(0, 25).reverse().forEach((c) => {
      const tr = document.createElement("tr");
      const p = c.approvalProbability;
      [String(c.claim_id).slice(-6), c.cpt_bucket, c.provider_type, "$" + c.billed_amount.toFixed(0), "$" + c.allowed_amount.toFixed(0), c.patient_age,
        p === null || p === undefined ? "—" : p.toFixed(3), c.decision || "not scored"].forEach((v) => {
        const td = document.createElement("td"); td.textContent = String(v); tr.append(td);
      });
      body.prepend(tr);
    });
    while (body.children.length > 25) body.lastElementChild.remove();
  }

  // The drift-over-time charts are drawn on the server; refresh them at most every 2 s.
  let historyAt = 0, historyBusy = false;
  function refreshDriftHistory() {
    const box = $("#drift-history");
    if (!box || historyBusy || Date.now() - historyAt < 2000) return;
    historyBusy = true; historyAt = Date.now();
    fetch("/ui/fragments/claims/drift-history", { headers: { Accept: "text/html" } })
      .then((r) => (r.ok ? r.text() : Promise.reject(r.status)))
      .then((html) => { box.innerHTML = html; box.dataset.windows = String(box.querySelectorAll("#drift-psi .series:first-of-type circle").length); })
      .catch(() => {})
      .finally(() => { historyBusy = false; });
  }

  function connectClaims() {
    if (document.body.dataset.page !== "claims") return;
    const proto = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(proto + location.host + "/ws/claims");
    socket.onopen = () => document.body.classList.add("live");
    socket.onclose = () => { document.body.classList.remove("live"); setTimeout(connectClaims, 3000); };
    socket.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      if (msg.claims) addClaims(msg.claims);
      if (msg.drift) { drawDrift(msg.drift); refreshDriftHistory(); }
      if (msg.status) {
        const s = msg.status;
        $("#stream-state").textContent = (s.running ? "Running" : "Stopped") + " · profile " + s.profile + (s.reference ? " · reference: " + s.reference.source : "");
        $("#scoring-note").textContent = s.scoring;
      }
    };
    window.addEventListener("pagehide", () => { socket.onclose = null; socket.close(); });
  }

  document.addEventListener("DOMContentLoaded", () => {
    bindDag();
    bindInspector();
    connectEvents();
    connectClaims();
  });
})();
