// freemem ui: tabs between the original and the pruned context; a confirmation before a restore; a long
// thread's chart fetched after the page.
// No inline handlers anywhere (the page's CSP forbids inline script): everything is wired here.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const tab of document.querySelectorAll("button.tab")) {
    tab.addEventListener("click", () => {
      for (const t of document.querySelectorAll("button.tab")) t.classList.toggle("active", t === tab);
      for (const pane of document.querySelectorAll(".pane")) {
        pane.classList.toggle("hidden", pane.id !== "pane-" + tab.dataset.tab);
      }
    });
  }
  for (const form of document.querySelectorAll("form.restore")) {
    form.addEventListener("submit", (ev) => {
      const one = form.querySelector("input[name=event]");
      const what = one ? "event " + one.value : "every unrestored event";
      if (!window.confirm("Put back the text freemem removed in " + what + "? The thread gets a new checkpoint.")) {
        ev.preventDefault();
      }
    });
  }
  // A long thread's chart walks its checkpoint history: drawn on its own request, put in place when it comes.
  for (const section of document.querySelectorAll("section[data-chart]")) {
    fetch(section.dataset.chart, {credentials: "same-origin"})
      .then((r) => (r.ok ? r.text() : Promise.reject(new Error("chart: HTTP " + r.status))))
      .then((text) => {
        const drawn = new DOMParser().parseFromString(text, "text/html").getElementById("chart-section");
        if (drawn) section.replaceWith(document.importNode(drawn, true));
      })
      .catch((err) => { section.querySelector("#chart-deferred").append(" (" + err.message + ")"); });
  }
  // Clicking a removed span lists the event that removed it in the status line.
  for (const del of document.querySelectorAll("del.freed")) {
    del.addEventListener("click", () => {
      const row = document.querySelector('tr.event-row[data-event="' + CSS.escape(del.dataset.event) + '"]');
      if (row) { row.classList.add("picked"); row.scrollIntoView({block: "center"}); }
    });
  }
});
