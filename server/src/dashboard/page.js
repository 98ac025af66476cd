"use strict";
(function () {
  const API = "/_dashboard/api/";
  const CHANGE = { "X-Bulkmock-Dashboard": "1" };
  const main = document.getElementById("main");
  // The page keeps at most this many rows (the server's MAX_ROWS); older rows are dropped.
  const MAX_ROWS = Number(main.dataset.maxRows);
  const timeline = document.getElementById("timeline");
  const rows = new Map(); // seq -> row element
  const groups = new Map(); // "client\u0000job" -> group element
  const lastPoll = new Map(); // status path -> the previous poll's view (for the wait the client took)
  let missed = 0; // events lost because the page fell behind
  let total = 0; // exchanges the server has recorded since it started (the highest seq)
  let base = 0; // the highest seq when the transcript was last cleared from this page

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function seconds(ms) { return (ms / 1000).toFixed(2) + " s"; }
  function kb(n) { return n < 10240 ? n + " B" : (n / 1024).toFixed(1) + " KiB"; }

  function groupFor(v) {
    const client = v.client || "(no client)";
    const job = v.job || "";
    const key = client + "\u0000" + job;
    let g = groups.get(key);
    if (!g) {
      g = el("section", "group");
      g.dataset.client = client;
      g.dataset.job = job;
      g.appendChild(el("h3", null, "client " + client + (job ? " \u00b7 job " + job : " \u00b7 authorization and discovery")));
      groups.set(key, g);
      timeline.appendChild(g);
    }
    return g;
  }

  function retryAfterMs(value) {
    if (!value) return null;
    if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
    const at = Date.parse(value);
    return isNaN(at) ? null : at;
  }

  function facts(v) {
    const out = [];
    if (v.fault) out.push(["fault", "fault " + v.fault]);
    if (v.fault_not_applied) out.push([null, "fault matched, not applied: " + v.fault_not_applied]);
    if (v.token) out.push([null, "token " + v.token.replace(/^Bearer\s*/, "")]);
    if (v.target === "status" && v.method === "GET") {
      const prev = lastPoll.get(v.path);
      if (prev) {
        const answered = prev.unix_ms + prev.duration_ms;
        const waited = v.unix_ms - answered;
        let text = "waited " + seconds(waited);
        let cls = null;
        const ra = retryAfterMs(prev.retry_after);
        if (ra !== null) {
          const asked = /^\d+$/.test(prev.retry_after.trim()) ? ra : ra - answered;
          text += " (Retry-After " + prev.retry_after + " asked " + seconds(Math.max(asked, 0)) + ")";
          if (waited + 100 < asked) { cls = "too-soon"; text += " too soon"; }
        }
        out.push([cls, text]);
      }
      lastPoll.set(v.path, v);
      if (lastPoll.size > 500) lastPoll.delete(lastPoll.keys().next().value);
      if (v.retry_after) out.push([null, "answered Retry-After " + v.retry_after]);
      if (v.progress) out.push([null, "X-Progress " + v.progress]);
    }
    if (v.target === "file" || v.target === "attachment") {
      out.push(["bytes", "bytes " + v.bytes + (v.total !== null && v.total !== undefined ? " of " + v.total : "")]);
      if (v.encoding) out.push([null, v.encoding]);
      if (v.range) out.push([null, "range " + v.range]);
    } else if (v.retry_after && v.target !== "status") {
      out.push([null, "Retry-After " + v.retry_after]);
    }
    if (v.issued) out.push([null, "issued token " + v.issued.token + ", expires_in " + v.issued.expires_in]);
    return out;
  }

  function addRow(v) {
    if (rows.has(v.seq)) return;
    const row = el("div", "row" + (v.fault ? " faulted" : ""));
    row.dataset.seq = v.seq;
    row.dataset.target = v.target || "";
    if (v.fault) row.dataset.fault = v.fault;
    row.appendChild(el("span", "seq", "#" + v.seq));
    row.appendChild(el("span", "at", "+" + v.at_ms + " ms"));
    const what = el("span", "what");
    what.appendChild(el("span", null, v.method + " " + v.path + (v.query ? "?" + v.query : "") + " \u2192 "));
    what.appendChild(el("span", "status-" + String(v.status).charAt(0), v.status));
    what.appendChild(el("span", null, "  (" + (v.target || "other") + ", " + v.duration_ms + " ms)"));
    row.appendChild(what);
    const f = el("span", "facts");
    for (const [cls, text] of facts(v)) {
      const part = el("span", cls, text);
      f.appendChild(part);
      f.appendChild(document.createTextNode("  "));
    }
    row.appendChild(f);
    if (v.assertion) {
      const d = el("details", "facts");
      d.appendChild(el("summary", null, "assertion (header and claims; the signature is never shown)"));
      d.appendChild(el("pre", null, JSON.stringify(v.assertion, null, 2)));
      row.appendChild(d);
    }
    row._view = v;
    groupFor(v).appendChild(row);
    rows.set(v.seq, row);
    prune();
  }

  function prune() {
    while (rows.size > MAX_ROWS) {
      const oldest = rows.keys().next().value;
      const row = rows.get(oldest);
      rows.delete(oldest);
      const g = row.parentNode;
      row.remove();
      if (g && g.querySelectorAll(".row").length === 0) {
        groups.delete(g.dataset.client + "\u0000" + g.dataset.job);
        g.remove();
      }
    }
  }

  function finished(seq, bytes, notApplied) {
    const row = rows.get(seq);
    if (!row) return;
    row._view.bytes = bytes;
    if (notApplied) {
      // The fault found only while the body streamed that it could not act.
      row.classList.remove("faulted");
      delete row.dataset.fault;
      const fired = row.querySelector(".facts .fault");
      if (fired) { fired.className = ""; fired.textContent = "fault matched, not applied: " + notApplied; }
    }
    const b = row.querySelector(".bytes");
    if (b) b.textContent = "bytes " + bytes + (row._view.total !== null && row._view.total !== undefined ? " of " + row._view.total : "");
  }

  function counters() {
    const since = Math.max(total - base, rows.size);
    document.getElementById("count").textContent = "(" + since + " exchanges)";
    document.getElementById("empty").hidden = rows.size > 0;
    const bound = document.getElementById("bound");
    bound.hidden = since <= rows.size;
    bound.textContent = "Showing the latest " + rows.size + " of " + since + " exchanges: the page keeps at most " + MAX_ROWS + " rows.";
    const lag = document.getElementById("lag");
    lag.hidden = missed === 0;
    lag.textContent = "This page fell behind and missed " + missed + " events (the server never waits for a page); download the transcript for all of them.";
  }

  function clearRows() {
    rows.clear(); groups.clear(); lastPoll.clear();
    timeline.replaceChildren();
    base = total;
  }

  // Refreshes of the side panels, at most one at a time and one pending.
  function throttled(fn, ms) {
    let timer = null, running = false, again = false;
    const run = async () => {
      timer = null;
      if (running) { again = true; return; }
      running = true;
      try { await fn(); } catch (e) { /* shown by the connection badge */ }
      running = false;
      if (again) { again = false; schedule(); }
    };
    const schedule = () => { if (!timer) timer = setTimeout(run, ms); };
    return schedule;
  }

  async function getJson(path) {
    const r = await fetch(API + path, { credentials: "same-origin" });
    if (!r.ok) throw new Error(path + ": " + r.status);
    return r.json();
  }
  async function change(method, path, body) {
    const r = await fetch(API + path, { method: method, headers: CHANGE, body: body, credentials: "same-origin" });
    const text = await r.text();
    if (!r.ok) {
      let message = text;
      try { message = JSON.parse(text).error || text; } catch (e) { /* plain text */ }
      throw new Error(message);
    }
    refreshState();
    return text;
  }

  function table(head, lines) {
    const t = el("table");
    const tr = el("tr");
    for (const h of head) tr.appendChild(el("th", null, h));
    t.appendChild(tr);
    for (const cells of lines) {
      const r = el("tr");
      for (const c of cells) {
        const td = el("td");
        if (c instanceof Node) td.appendChild(c); else td.textContent = c === null || c === undefined ? "" : String(c);
        r.appendChild(td);
      }
      t.appendChild(r);
    }
    return t;
  }

  function button(text, onClick) {
    const b = el("button", null, text);
    b.type = "button";
    b.addEventListener("click", onClick);
    return b;
  }

  function showFaults(rules) {
    const box = document.getElementById("faults");
    if (rules.length === 0) { box.replaceChildren(el("p", "note", "No rule: the server behaves.")); return; }
    box.replaceChildren(table(["id", "rule", "matched", "fired", "", ""], rules.map(r => {
      const rule = el("span", null, (r.rule.name ? r.rule.name + ": " : "") + "on " + r.rule.on + " " + JSON.stringify(r.rule.fault) + (r.rule.when ? " when " + JSON.stringify(r.rule.when) : "") + (r.rule.times ? " times " + r.rule.times : ""));
      const state = r.retired ? " (retired)" : r.disabled ? " (disabled)" : "";
      const line = el("span");
      line.appendChild(rule);
      line.appendChild(el("span", "note", state));
      const toggle = button(r.disabled ? "enable" : "disable", () => change("POST", "faults/" + r.id, JSON.stringify({ enabled: !!r.disabled })).catch(showError));
      toggle.dataset.rule = r.id;
      const del = button("delete", () => change("DELETE", "faults/" + r.id).catch(showError));
      del.dataset.rule = r.id;
      return [r.id, line, r.matched, r.fired, toggle, del];
    })));
  }

  function showJobs(jobs) {
    const box = document.getElementById("jobs");
    if (jobs.length === 0) { box.replaceChildren(el("p", "note", "No export yet.")); return; }
    box.replaceChildren(...jobs.map(j => {
      const d = el("details");
      d.dataset.job = j.id;
      const s = el("summary", null, j.id + " \u00b7 " + j.level + " \u00b7 " + j.state + (j.failure ? " (" + j.failure + ")" : "") + " \u00b7 client " + (j.owner || "-") + " \u00b7 ");
      const p = el("progress");
      p.max = 100; p.value = j.progress;
      s.appendChild(p);
      s.appendChild(document.createTextNode(" " + j.ready_files + "/" + j.total_files + " files"));
      d.appendChild(s);
      d.appendChild(table(["file", "lines"], j.files.map(f => [f.name, f.lines === null ? "counting" : f.lines])));
      return d;
    }));
  }

  function showClients(clients, auth) {
    const box = document.getElementById("clients");
    if (!auth) { box.replaceChildren(el("p", "note", "Authorization is off (open server): no client registration.")); return; }
    box.replaceChildren(table(["client", "name", "keys", "own fault rules", "quirks"], clients.map(c => [c.id, c.name, c.keys, c.fault_rules, c.quirks])));
  }

  function showScenario(sc) {
    if (!sc) return;
    document.getElementById("scenario").hidden = false;
    document.getElementById("scenario-id").textContent = sc.id || "";
    document.getElementById("scenario-title").textContent = sc.title || "";
    document.getElementById("scenario-description").textContent = sc.description || "";
    document.getElementById("scenario-expect").textContent = JSON.stringify(sc.expect || {}, null, 2);
    document.getElementById("scenario-faults").textContent = (sc.faults || []).length ? JSON.stringify(sc.faults, null, 2) : "none";
  }

  const refreshState = throttled(async () => {
    const s = await getJson("state");
    document.getElementById("base").textContent = "FHIR base " + s.fhir_base;
    document.getElementById("revision").textContent = "data revision " + s.revision.revision;
    showFaults(s.faults);
    showJobs(s.jobs);
    showClients(s.clients, s.auth);
    showScenario(s.scenario);
  }, 300);

  const refreshChecks = throttled(async () => {
    const c = await getJson("checks");
    const box = document.getElementById("checks");
    if (!c.available) { box.replaceChildren(el("p", "note", "No live checks on this server (they come with the bulkmock binary).")); return; }
    // Requests without a client (discovery before a token, an open server) last.
    const clients = Object.keys(c.clients).sort((a, b) => (a === "") - (b === "") || a.localeCompare(b));
    if (clients.length === 0) { box.replaceChildren(el("p", "note", "No client yet.")); return; }
    const windowNote = c.since_seq > 1 ? [el("p", "note", "Over the latest " + c.window + " exchanges (from #" + c.since_seq + "); the whole transcript is bulkmock judge's.")] : [];
    box.replaceChildren(...clients.map(id => {
      const results = c.clients[id];
      const count = v => results.filter(r => r.verdict === v).length;
      const d = el("details");
      d.dataset.client = id;
      d.open = results.some(r => r.verdict !== "skip");
      const s = el("summary", null, "client " + (id || "(none)") + ": " + count("pass") + " pass, " + count("fail") + " fail, " + count("warn") + " warn ");
      const a = el("a", null, "download transcript");
      a.href = API + "transcript?client=" + encodeURIComponent(id);
      a.setAttribute("download", "");
      s.appendChild(a);
      d.appendChild(s);
      d.appendChild(table(["check", "level", "verdict", "evidence"], results.map(r => {
        const v = el("span", "verdict-" + r.verdict, r.verdict);
        const ev = (r.message || "") + (r.exchanges && r.exchanges.length ? " (#" + r.exchanges.join(", #") + ")" : "");
        const name = el("span", null, r.id);
        name.title = r.title;
        return [name, r.level, v, ev];
      })));
      return d;
    }), ...windowNote);
  }, 2000);

  function showError(e) {
    const box = document.getElementById("fault-error");
    box.hidden = false;
    box.textContent = e.message;
  }

  document.getElementById("fault-form").addEventListener("submit", ev => {
    ev.preventDefault();
    const box = document.getElementById("fault-error");
    const text = document.getElementById("fault-text").value;
    // Validated first (answered 200 either way), so a typo is no failed request.
    change("POST", "validate", text)
      .then(answer => {
        const verdict = JSON.parse(answer);
        if (verdict.error) throw new Error(verdict.error);
        return change("POST", "faults", text);
      })
      .then(() => { box.hidden = true; box.textContent = ""; })
      .catch(showError);
  });
  document.getElementById("advance").addEventListener("click", () => change("POST", "revision").catch(showError));
  document.getElementById("clear").addEventListener("click", () => change("DELETE", "transcript").catch(showError));

  function connect() {
    const conn = document.getElementById("conn");
    const source = new EventSource("/_dashboard/events");
    const data = ev => JSON.parse(ev.data);
    source.addEventListener("open", () => { conn.textContent = "live"; conn.className = "badge on"; });
    source.addEventListener("error", () => { conn.textContent = "reconnecting"; conn.className = "badge off"; });
    source.addEventListener("hello", ev => { const h = data(ev); total = h.total; base = h.total - h.kept; counters(); refreshState(); refreshChecks(); });
    source.addEventListener("exchange", ev => {
      const v = data(ev);
      addRow(v);
      total = Math.max(total, v.seq);
      counters();
      refreshState();
      refreshChecks();
    });
    source.addEventListener("finished", ev => { const f = data(ev); finished(f.seq, f.bytes, f.fault_not_applied); refreshChecks(); });
    source.addEventListener("cleared", () => { clearRows(); counters(); refreshChecks(); });
    source.addEventListener("lagged", ev => { missed += data(ev).missed; counters(); });
  }
  connect();
  counters();
})();
