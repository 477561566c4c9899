// Edgewise dashboard: the few lines of JavaScript the pages need. No build
// step, no library. Device data is only ever set with textContent.
"use strict";

// The fleet page: re-read the table now and then.
const fleet = document.querySelector("[data-refresh]");
if (fleet) {
  setInterval(async () => {
    try {
      const reply = await fetch(fleet.dataset.refresh, { cache: "no-store" });
      // The fragment is the server's own escaped HTML.
      if (reply.ok) fleet.innerHTML = await reply.text();
    } catch (_) { /* offline for a moment: keep what is shown */ }
  }, 5000);
}

// The alert feed: alerts pushed by the server, put in their place
// (critical first, then newest first).
const table = document.querySelector("table[data-events]");
if (table) {
  const body = table.tBodies[0];
  const status = document.getElementById("feed-status");
  const rank = { critical: 0, warning: 1 };
  const classes = { critical: "severity-critical", warning: "severity-warning", info: "severity-info" };
  const utc = (ms) => new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC";
  const cell = (row, text, className) => {
    const td = row.insertCell();
    if (className) td.className = className;
    td.textContent = text;
    return td;
  };
  const source = new EventSource(table.dataset.events + "?after=" + table.dataset.lastId);
  source.addEventListener("open", () => { status.textContent = "live"; });
  source.addEventListener("error", () => { status.textContent = "reconnecting…"; });
  source.addEventListener("alert", (event) => {
    const alert = JSON.parse(event.data);
    if (body.querySelector('tr[data-id="' + alert.id + '"]')) return;
    const row = document.createElement("tr");
    row.className = "alert new";
    row.dataset.id = alert.id;
    row.dataset.rank = rank[alert.severity] ?? 2;
    row.dataset.ts = alert.ts;
    cell(row, utc(alert.ts));
    const severity = document.createElement("span");
    severity.className = classes[alert.severity] || "";
    severity.textContent = alert.severity;
    row.insertCell().appendChild(severity);
    cell(row, alert.device);
    const link = document.createElement("a");
    link.href = "/sensors/" + encodeURIComponent(alert.device) + "/" + encodeURIComponent(alert.sensor);
    link.textContent = alert.sensor;
    row.insertCell().appendChild(link);
    cell(row, alert.code, "code");
    cell(row, alert.message);
    cell(row, alert.value === null ? "" : String(alert.value), "num");
    const before = Array.from(body.rows).find((other) =>
      Number(other.dataset.rank) > Number(row.dataset.rank) ||
      (other.dataset.rank === row.dataset.rank && Number(other.dataset.ts) < alert.ts));
    body.insertBefore(row, before || null);
    while (body.rows.length > 500) body.deleteRow(-1);
  });
}
