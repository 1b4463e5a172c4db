// Handoff console. Agent-written text is only ever set with textContent, never as HTML.
"use strict";

function leftText(seconds) {
  if (seconds <= 0) return "expired";
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = Math.floor(seconds % 60);
  if (h) return `${h}h${String(m).padStart(2, "0")}m left`;
  if (m) return `${m}m${String(s).padStart(2, "0")}s left`;
  return `${s}s left`;
}

function tickCountdowns() {
  for (const el of document.querySelectorAll(".countdown[data-deadline]")) {
    const seconds = (Date.parse(el.dataset.deadline) - Date.now()) / 1000;
    el.textContent = leftText(seconds);
    el.classList.toggle("urgent", seconds < 120);
  }
}

function setUpApprove() {
  const form = document.getElementById("approve");
  if (!form) return;
  const button = document.getElementById("approve-button");
  const hint = document.getElementById("approve-hint");
  const boxes = Array.from(form.querySelectorAll("input[name=ack]"));
  const openedAt = Date.now();
  const hold = Number(form.dataset.hold || "0") * 1000;
  const update = () => {
    const unticked = boxes.filter((b) => !b.checked).length;
    const wait = Math.ceil((hold - (Date.now() - openedAt)) / 1000);
    button.disabled = unticked > 0 || wait > 0;
    if (unticked > 0) hint.textContent = `Tick every box to approve (${unticked} left).`;
    else if (wait > 0) hint.textContent = `Approve becomes available in ${wait}s: read it once more.`;
    else hint.textContent = "";
  };
  boxes.forEach((b) => b.addEventListener("change", update));
  form.addEventListener("submit", (event) => { update(); if (button.disabled) event.preventDefault(); });
  setInterval(update, 500);
  update();
}

// A standing grant's own line (kind ActionGrant): granted, used up, refused, revoked.
function grantLine(entry, li, when) {
  const text = document.createElement("span");
  const who = entry.by ? ` by ${entry.by}` : "";
  const condition = entry.condition ? ` if ${entry.condition}` : "";
  const comment = entry.comment ? ` — “${entry.comment}”` : "";
  text.textContent = `grant ${entry.name} · ${entry.agent} · ${entry.action} on ${entry.target}${condition} · ${entry.event}${who} · ${entry.used}/${entry.maxUses} used, until ${entry.until} — ${entry.message}${comment}`;
  const link = document.createElement("a");
  link.href = `/requests/${encodeURIComponent(entry.namespace)}/${encodeURIComponent(entry.request)}`;
  link.textContent = "prompted by";
  li.append(when, " ", text, " ", link);
  return li;
}

function feedLine(entry, csrf) {
  const li = document.createElement("li");
  li.className = `event ${entry.event || ""}`;
  const when = document.createElement("time");
  const at = entry.at ? new Date(entry.at) : new Date();
  when.textContent = isNaN(at) ? "" : at.toLocaleTimeString();
  if (entry.kind === "ActionGrant") return grantLine(entry, li, when);
  const text = document.createElement("span");
  const who = entry.by ? ` by ${entry.by}` : "";
  const reason = entry.reason && entry.event !== "Reviewed" ? ` (${entry.reason})` : "";
  const target = entry.target ? ` on ${entry.target}` : "";
  const verb = entry.event === "Reviewed" ? `reviewed: ${entry.reason}${who}` : `${entry.event}${reason}${who}`;
  text.textContent = `${entry.agent} · ${entry.action}${target} · tier ${entry.tier} ${entry.oversight} · ${verb} — ${entry.summary}`;
  const link = document.createElement("a");
  link.href = `/requests/${encodeURIComponent(entry.namespace)}/${encodeURIComponent(entry.name)}`;
  link.textContent = "open";
  li.append(when, " ", text, " ", link);
  if (entry.reversible === "true" && (entry.event === "Approved" || entry.event === "Executed")) {
    const form = document.createElement("form");
    form.method = "post";
    form.action = `${link.pathname}/rollback`;
    const token = document.createElement("input");
    token.type = "hidden"; token.name = "csrf"; token.value = csrf;
    const button = document.createElement("button");
    button.type = "submit"; button.textContent = "Roll back";
    form.append(token, button);
    li.append(" ", form);
  }
  return li;
}

function setUpFeed() {
  const list = document.getElementById("feed");
  if (!list) return;
  const state = document.getElementById("feed-state");
  const source = new EventSource("/feed/events");
  source.onopen = () => { state.textContent = "Live."; };
  source.onerror = () => { state.textContent = "Reconnecting…"; };
  source.onmessage = (message) => {
    const entry = JSON.parse(message.data);
    list.prepend(feedLine(entry, list.dataset.csrf));
    while (list.children.length > 200) list.lastChild.remove();
  };
}

document.addEventListener("DOMContentLoaded", () => {
  tickCountdowns();
  setInterval(tickCountdowns, 1000);
  setUpApprove();
  setUpFeed();
});
