// The page of `gluon-triplet serve`: drop or choose a picture, see its nearest indexed items,
// click one to search from it. Plain JS; every request goes through `call`, which adds the
// bearer token when the server asks for one.
"use strict";

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("gluon-triplet-token") || "";
let pending = null; // what to retry once a token is given

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function call(path, options) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const response = await fetch(path, Object.assign({ headers }, options || {}));
  if (response.status === 401) {
    $("auth").hidden = false;
    throw new Error("this server needs a token: enter it above");
  }
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

async function about() {
  try {
    const h = await (await call("health")).json();
    $("about").textContent = `${h.size.toLocaleString()} items of ${h.dataset || "?"} (${h.split || "?"}), ` +
      `${h.dimension}-d ${h.metric}, run ${h.run || "?"}`;
  } catch (e) {
    $("about").textContent = e.message;
  }
}

function showQuery(blob) {
  const img = $("query");
  if (img.src) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(blob);
  img.hidden = false;
  $("hint").hidden = true;
}

async function thumbnail(img, id) {
  try {
    const blob = await (await call(`items/${id}/thumbnail`)).blob();
    img.src = URL.createObjectURL(blob);
  } catch (e) {
    img.alt = "no picture";
    img.title = e.message;
  }
}

function render(result) {
  const box = $("results");
  box.replaceChildren();
  for (const n of result.neighbours) {
    if (n.id < 0) continue;
    const card = document.createElement("figure");
    card.className = "hit";
    card.dataset.id = n.id;
    card.title = n.path || `item ${n.id}`;
    const img = document.createElement("img");
    img.alt = `item ${n.id}`;
    const label = document.createElement("div");
    label.className = "label";
    label.textContent = n.label === null ? "(no label)" : String(n.label);
    const distance = document.createElement("div");
    distance.className = "distance";
    distance.textContent = `distance ${n.distance.toFixed(4)} · #${n.id}`;
    card.append(img, label, distance);
    card.addEventListener("click", () => searchItem(n.id));
    box.append(card);
    thumbnail(img, n.id);
  }
}

async function search(blob, name) {
  pending = () => search(blob, name);
  const k = Math.max(1, parseInt($("k").value, 10) || 10);
  setStatus(`searching ${name}…`);
  showQuery(blob);
  try {
    const form = new FormData();
    form.append("image", blob, name);
    const result = await (await call(`search?k=${k}`, { method: "POST", body: form })).json();
    render(result);
    setStatus(`${result.neighbours.length} nearest items of ${name}`);
    pending = null;
  } catch (e) {
    setStatus(e.message, true);
  }
}

async function searchItem(id) {
  try {
    const blob = await (await call(`items/${id}/image`)).blob();
    await search(blob, `item ${id}`);
  } catch (e) {
    setStatus(e.message, true);
  }
}

$("file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) search(file, file.name);
  event.target.value = "";
});
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  const file = event.dataTransfer.files[0];
  if (file) search(file, file.name);
});
$("auth").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem("gluon-triplet-token", token);
  $("auth").hidden = true;
  about();
  if (pending) pending();
});
about();
