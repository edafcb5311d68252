// pgflow console: small hand-written script, no framework, no CDN.
// It refreshes the overview, sends actions to the JSON API with the
// session's CSRF token, asks for confirmation with the count an action will
// touch, and validates the publish form's JSON as it is typed.
"use strict";
(function () {
  const meta = (n) => (document.querySelector(`meta[name="${n}"]`) || {}).content || "";
  const base = meta("pgflow-base");
  const csrf = meta("pgflow-csrf");
  const refreshMS = parseInt(meta("pgflow-refresh-ms"), 10) || 5000;
  const $ = (s, el) => (el || document).querySelector(s);
  const $$ = (s, el) => Array.from((el || document).querySelectorAll(s));

  async function api(method, path, body) {
    const opts = { method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf } };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const res = await fetch(base + path, opts);
    let data = null;
    try { data = await res.json(); } catch (_) { /* not JSON */ }
    if (!res.ok) {
      throw new Error((data && data.error) || `${res.status} ${res.statusText}`);
    }
    return data;
  }

  function toast(msg, bad) {
    const t = $("#toast");
    t.textContent = msg;
    t.className = "toast" + (bad ? " bad" : "");
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.hidden = true; }, bad ? 12000 : 6000);
  }
  // A message shown after the reload an action triggers.
  function flash(msg) { sessionStorage.setItem("pgflow-flash", msg); }
  const pending = sessionStorage.getItem("pgflow-flash");
  if (pending) { sessionStorage.removeItem("pgflow-flash"); document.addEventListener("DOMContentLoaded", () => toast(pending)); }

  function confirmDialog(title, text, okLabel) {
    const d = $("#confirm");
    $("#confirm-title").textContent = title;
    $("#confirm-text").textContent = text;
    $("#confirm-ok").textContent = okLabel || "Confirm";
    return new Promise((resolve) => {
      d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
      d.returnValue = "";
      d.showModal();
    });
  }

  const plural = (n, w) => `${n} ${w}${n === 1 ? "" : "s"}`;

  // ---- overview: refresh without reload ----
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  function age(s) {
    if (s <= 0) return "–";
    if (s < 60) return `${Math.round(s)}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.floor(s) % 60).padStart(2, "0")}s`;
    if (s < 172800) return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
    return `${Math.floor(s / 86400)}d`;
  }
  function spark(h, f) {
    const w = 120, ht = 26;
    const top = Math.max(1, ...h, ...f);
    const line = (v) => v.map((x, i) => `${(i * w / Math.max(1, v.length - 1)).toFixed(1)},${(ht - 1 - x * (ht - 2) / top).toFixed(1)}`).join(" ");
    return `<svg class="spark" viewBox="0 0 ${w} ${ht}" width="${w}" height="${ht}" role="img" aria-label="handled and failed per minute, last hour"><polyline class="h" points="${line(h)}"/><polyline class="f" points="${line(f)}"/></svg>`;
  }
  function row(q) {
    const link = `${base}/queues/${encodeURIComponent(q.queue)}`;
    const dlq = q.dead_lettered ? `<a href="${link}?tab=dead">${q.dead_lettered}</a>` : "0";
    return `<tr data-queue="${esc(q.queue)}"><td><a href="${link}">${esc(q.queue)}</a></td>` +
      `<td class="n">${q.ready}</td><td class="n">${q.delayed}</td><td class="n">${q.in_flight}</td><td class="n">${q.retrying}</td>` +
      `<td class="n${q.dead_lettered ? " warn" : ""}">${dlq}</td><td class="n">${age(q.oldest_ready_age_s)}</td>` +
      `<td>${q.paused ? '<span class="pill paused">paused</span>' : '<span class="pill ok">active</span>'}</td>` +
      `<td class="n">${q.handled_1h}</td><td class="n">${q.failed_1h}</td><td>${spark(q.handled_per_min || [], q.failed_per_min || [])}</td></tr>`;
  }
  function startOverview() {
    const tbody = $("#queues tbody");
    if (!tbody) return;
    setInterval(async () => {
      if (document.hidden) return;
      try {
        const qs = await api("GET", "/api/queues");
        const fresh = document.createElement("tbody");
        fresh.innerHTML = qs.length ? qs.map(row).join("") :
          '<tr class="empty"><td colspan="11">No queues yet. Publish a message or declare a queue, and it shows here.</td></tr>';
        // Replace only the rows that changed, so a row being hovered or
        // clicked stays put while the others update.
        const now = Array.from(tbody.rows), next = Array.from(fresh.rows);
        const sameQueues = now.length === next.length && now.every((r, i) => r.dataset.queue === next[i].dataset.queue);
        if (!sameQueues) {
          tbody.replaceChildren(...next);
        } else {
          now.forEach((r, i) => { if (r.outerHTML !== next[i].outerHTML) r.replaceWith(next[i]); });
        }
        tbody.dataset.refreshed = String(Date.now());
        const counted = $("#counted");
        if (counted && qs.length) {
          const at = new Date(qs[0].counted_at).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
          counted.textContent = `Counted at ${at} in ${Math.round(qs[0].count_ms)} ms.`;
        }
      } catch (e) {
        toast("Refresh failed: " + e.message, true);
      }
    }, refreshMS);
  }

  // ---- actions ----
  async function run(label, fn, after) {
    try {
      const res = await fn();
      after(res);
    } catch (e) {
      toast(`${label} failed: ${e.message}`, true);
    }
  }
  const queuePage = (q, tab) => `${base}/queues/${encodeURIComponent(q)}${tab ? "?tab=" + tab : ""}`;

  async function onAct(btn) {
    const act = btn.dataset.act, q = btn.dataset.queue, id = btn.dataset.id ? parseInt(btn.dataset.id, 10) : 0;
    switch (act) {
      case "pause":
      case "resume":
        return run(act, () => api("POST", `/api/queues/${encodeURIComponent(q)}/${act}`), () => {
          flash(`Queue ${q} ${act === "pause" ? "paused: consumers stop claiming its messages" : "resumed"}.`);
          location.reload();
        });
      case "redrive-one":
        if (!await confirmDialog("Redrive dead letter", `Send dead letter ${id} back to queue ${q}? It starts fresh (retry count 0) and is delivered again.`, "Redrive 1 message")) return;
        return run("Redrive", () => api("POST", "/api/dlq/redrive", { ids: [id] }), (r) => {
          if (r.skipped && r.skipped.length) { toast(`Not redriven: ${r.skipped[0].reason}`, true); return; }
          flash(`Redrove ${plural(r.redriven, "message")} to ${q}.`);
          location.href = queuePage(q, "dead");
        });
      case "purge-one":
        if (!await confirmDialog("Purge dead letter", `Delete dead letter ${id} of queue ${q} for good? This purges 1 message and cannot be undone.`, "Purge 1 message")) return;
        return run("Purge", () => api("POST", "/api/dlq/purge", { ids: [id] }), (r) => {
          flash(`Purged ${plural(r.purged, "message")}.`);
          location.href = queuePage(q, "dead");
        });
    }
  }

  function selection() { return $$("input.pick:checked").map((c) => parseInt(c.value, 10)); }
  function bulkFilter(box) {
    const f = { queue: box.dataset.queue };
    if (box.dataset.since) f.since = box.dataset.since;
    if (box.dataset.error) f.error = box.dataset.error;
    if (box.dataset.priority) f.priority = parseInt(box.dataset.priority, 10);
    return f;
  }
  async function onBulk(btn) {
    const box = btn.closest("#dlq-actions");
    const q = box.dataset.queue;
    const kind = btn.dataset.bulk;
    const redrive = kind.startsWith("redrive");
    let body, n;
    if (kind.endsWith("selected")) {
      const ids = selection();
      if (!ids.length) return;
      body = { ids };
      n = ids.length;
    } else {
      body = bulkFilter(box);
      const qs = new URLSearchParams(Object.entries(body).map(([k, v]) => [k, String(v)]));
      try {
        n = (await api("GET", "/api/dlq/count?" + qs)).count;
      } catch (e) { toast("Counting failed: " + e.message, true); return; }
      if (n === 0) { toast("No dead letter matches."); return; }
    }
    let rateText = "";
    if (redrive) {
      const rate = parseFloat($("#redrive-rate").value);
      if (rate > 0) { body.rate = rate; rateText = ` at ${rate} messages per second`; }
    }
    const ok = redrive
      ? await confirmDialog("Redrive dead letters", `Redrive ${plural(n, "dead letter")} of queue ${q} back to the queue${rateText}?`, `Redrive ${plural(n, "message")}`)
      : await confirmDialog("Purge dead letters", `Delete ${plural(n, "dead letter")} of queue ${q} for good? This cannot be undone.`, `Purge ${plural(n, "message")}`);
    if (!ok) return;
    btn.disabled = true;
    await run(redrive ? "Redrive" : "Purge", () => api("POST", redrive ? "/api/dlq/redrive" : "/api/dlq/purge", body), (r) => {
      if (redrive) {
        const skipped = (r.skipped || []).length;
        flash(`Redrove ${plural(r.redriven, "message")} to ${q}${skipped ? `; ${skipped} skipped (dedup key held by a live message)` : ""}.`);
      } else {
        flash(`Purged ${plural(r.purged, "message")}.`);
      }
      location.reload();
    });
    btn.disabled = false;
  }
  function onPick() {
    const n = selection().length;
    $$("[data-bulk$='selected']").forEach((b) => { b.disabled = n === 0; b.textContent = b.textContent.replace(/ \(\d+\)$/, "") + (n ? ` (${n})` : ""); });
  }

  // ---- publish: JSON editor with validation ----
  function checkJSON(text, what, objectOfStrings) {
    if (text.trim() === "") return { ok: !objectOfStrings ? false : true, msg: objectOfStrings ? "" : `${what} is empty: type a JSON value` };
    try {
      const v = JSON.parse(text);
      if (objectOfStrings) {
        if (v === null || typeof v !== "object" || Array.isArray(v)) return { ok: false, msg: "Headers must be a JSON object" };
        for (const [k, x] of Object.entries(v)) if (typeof x !== "string") return { ok: false, msg: `Header ${k} must be a string` };
      }
      return { ok: true, msg: "Valid JSON", value: v };
    } catch (e) {
      // Point at the line and column the parser stopped at.
      let msg = e.message;
      const m = /position (\d+)/.exec(msg);
      if (m) {
        const pos = parseInt(m[1], 10), before = text.slice(0, pos).split("\n");
        msg += ` (line ${before.length}, column ${before[before.length - 1].length + 1})`;
      }
      return { ok: false, msg: `${what} is not valid JSON: ${msg}` };
    }
  }
  function startPublish() {
    const d = $("#publish");
    if (!d) return;
    const payload = $("#pub-payload"), headers = $("#pub-headers"), submit = $("#pub-submit");
    function validate() {
      const p = checkJSON(payload.value, "Payload", false);
      const h = checkJSON(headers.value, "Headers", true);
      const ps = $("#pub-payload-status"), hs = $("#pub-headers-status");
      ps.textContent = p.msg; ps.className = "hint " + (p.ok ? "good" : "bad");
      hs.textContent = h.ok ? "" : h.msg; hs.className = "hint " + (h.ok ? "good" : "bad");
      submit.disabled = !(p.ok && h.ok);
      return { p, h };
    }
    payload.addEventListener("input", validate);
    headers.addEventListener("input", validate);
    $("[data-open=publish]").addEventListener("click", () => { validate(); d.showModal(); payload.focus(); });
    $("#publish-form").addEventListener("submit", async (ev) => {
      if (ev.submitter && ev.submitter.value !== "ok") return;
      ev.preventDefault();
      const { p, h } = validate();
      if (!p.ok || !h.ok) return;
      const body = { payload: p.value };
      if (h.value && Object.keys(h.value).length) body.headers = h.value;
      const prio = $("#pub-priority").value.trim();
      if (prio !== "") body.priority = parseInt(prio, 10);
      const delay = $("#pub-delay").value.trim();
      if (delay) body.delay = delay;
      const dedup = $("#pub-dedup").value.trim();
      if (dedup) body.dedup_key = dedup;
      const q = d.dataset.queue;
      submit.disabled = true;
      try {
        const r = await api("POST", `/api/queues/${encodeURIComponent(q)}/publish`, body);
        d.close();
        flash(`Published message ${r.id} to ${q}.`);
        location.reload();
      } catch (e) {
        $("#pub-payload-status").textContent = "Not published: " + e.message;
        $("#pub-payload-status").className = "hint bad";
        submit.disabled = false;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    startOverview();
    startPublish();
    document.addEventListener("click", (ev) => {
      const a = ev.target.closest("[data-act]");
      if (a) { ev.preventDefault(); onAct(a); return; }
      const b = ev.target.closest("[data-bulk]");
      if (b) { ev.preventDefault(); onBulk(b); }
    });
    const all = $("#select-all");
    if (all) all.addEventListener("change", () => { $$("input.pick").forEach((c) => { c.checked = all.checked; }); onPick(); });
    $$("input.pick").forEach((c) => c.addEventListener("change", onPick));
  });
})();
