// Edgewise dashboard: the few lines of JavaScript the pages need. No build
// step, no library. Device data reaches a page only as text, or in HTML the
// server rendered and escaped (maud): the fleet table, the pushed alert rows.
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

// The alert feed: alerts pushed by the server, each with its row as the
// server renders it (escaped there, like the fleet table), put in its place
// (critical first, then newest first).
const table = document.querySelector("table[data-events]");
if (table) {
  const body = table.tBodies[0];
  const status = document.getElementById("feed-status");
  // Ids are `<epoch>-<number>`: the dashboard's start, then arrival order.
  const epochOf = (id) => String(id).split("-")[0];
  let epoch = epochOf(table.dataset.lastId);
  const source = new EventSource(table.dataset.events + "?after=" + encodeURIComponent(table.dataset.lastId));
  source.addEventListener("open", () => { status.textContent = "live"; });
  source.addEventListener("error", () => { status.textContent = "reconnecting…"; });
  source.addEventListener("alert", (event) => {
    const alert = JSON.parse(event.data);
    if (epochOf(alert.id) !== epoch) {
      // The dashboard restarted: it sends its whole feed again, numbered
      // anew. The rows of the old start go (a reload shows the same), so
      // none is shown twice and none is taken for a new one.
      epoch = epochOf(alert.id);
      while (body.rows.length > 0) body.deleteRow(-1);
    }
    if (body.querySelector('tr[data-id="' + alert.id + '"]')) return;
    const template = document.createElement("template");
    template.innerHTML = alert.row;
    const row = template.content.querySelector("tr");
    if (!row) return;
    row.classList.add("new");
    const rank = Number(row.dataset.rank);
    const before = Array.from(body.rows).find((other) =>
      Number(other.dataset.rank) > rank ||
      (Number(other.dataset.rank) === rank && Number(other.dataset.ts) < alert.ts));
    body.insertBefore(row, before || null);
    while (body.rows.length > 500) body.deleteRow(-1);
  });
}
