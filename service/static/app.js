// dcnserve web page: upload an image, draw the detections, click to see where the deformable
// layers sampled (GET /offsets/{id}?format=json). No build step, no dependencies.
"use strict";
const COLOURS = ["rgb(255,64,64)", "rgb(255,200,0)", "rgb(64,160,255)", "rgb(160,255,96)", "rgb(220,96,255)"];
const canvas = document.getElementById("canvas");
const ctx = canvas.getContext("2d");
const statusLine = document.getElementById("status");
const threshold = document.getElementById("threshold");
const layersBox = document.getElementById("layers");
const picker = document.getElementById("model-picker");
const state = { image: null, result: null, offsets: null, hidden: new Set() };

function setStatus(text) { statusLine.textContent = text; }

async function errorText(response) {
  try { return (await response.json()).detail; } catch (e) { return response.statusText; }
}

function draw() {
  if (!state.image) return;
  ctx.drawImage(state.image, 0, 0);
  const scale = Math.max(1, canvas.width / 800);
  const shown = state.result ? state.result.detections.filter(d => d.score >= +threshold.value) : [];
  ctx.lineWidth = 2 * scale;
  ctx.strokeStyle = "rgb(0,255,160)";
  for (const d of shown) {
    const [x1, y1, x2, y2] = d.box;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
  }
  canvas.dataset.boxes = String(shown.length);
  if (state.offsets) {
    const layers = state.offsets.layers.slice().reverse();  // bottom layer first, top on top
    for (const layer of layers) {
      if (state.hidden.has(layer.index)) continue;
      ctx.fillStyle = COLOURS[layer.index % COLOURS.length];
      const top = Math.max(...layer.weights, 1e-6);
      layer.points.forEach(([x, y], i) => {
        ctx.beginPath();
        ctx.arc(x, y, (1 + 3 * layer.weights[i] / top) * scale, 0, 2 * Math.PI);
        ctx.fill();
      });
    }
    ctx.strokeStyle = "white";
    ctx.beginPath();
    ctx.moveTo(state.offsets.x - 6 * scale, state.offsets.y); ctx.lineTo(state.offsets.x + 6 * scale, state.offsets.y);
    ctx.moveTo(state.offsets.x, state.offsets.y - 6 * scale); ctx.lineTo(state.offsets.x, state.offsets.y + 6 * scale);
    ctx.stroke();
  }
  const total = state.result ? state.result.detections.length : 0;
  if (state.result) {
    setStatus(`${shown.length} of ${total} detections shown; ${state.result.timing_ms.total} ms ` +
      `(${state.result.model} v${state.result.version}, ${state.result.backend}). ` +
      "Click the image to see sampling locations.");
  }
}

function showLayerToggles() {
  layersBox.querySelectorAll("label").forEach(l => l.remove());
  for (const layer of state.offsets.layers) {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = !state.hidden.has(layer.index);
    box.addEventListener("change", () => {
      box.checked ? state.hidden.delete(layer.index) : state.hidden.add(layer.index);
      draw();
    });
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = COLOURS[layer.index % COLOURS.length];
    label.append(box, swatch, `${layer.index === 0 ? "top" : "layer " + layer.index}: ` +
      `${layer.points.length} points`);
    layersBox.append(label);
  }
}

async function detect(file) {
  setStatus("Detecting…");
  state.result = null; state.offsets = null;
  const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" }).catch(() => null);
  const model = picker.value ? `&model=${encodeURIComponent(picker.value)}` : "";
  const response = await fetch(`/detect?score_threshold=0.05&max_detections=1000${model}`, {
    method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream" },
  });
  if (!response.ok) { setStatus(`Error ${response.status}: ${await errorText(response)}`); return; }
  state.result = await response.json();
  canvas.width = state.result.width;
  canvas.height = state.result.height;
  state.image = bitmap;
  canvas.dataset.resultId = state.result.id;
  canvas.dataset.model = state.result.model;
  if (!bitmap) {  // e.g. TIFF: the service decodes it, this browser cannot display it
    canvas.dataset.boxes = "0";
    setStatus(`${state.result.detections.length} detections; this browser cannot display the ` +
      "image format, so nothing is drawn (GET /offsets/{id} renders it server-side).");
    return;
  }
  draw();
}

async function showOffsets(x, y) {
  if (!state.result) return;
  const url = `/offsets/${state.result.id}?format=json&x=${x.toFixed(1)}&y=${y.toFixed(1)}`;
  const response = await fetch(url);
  if (!response.ok) { setStatus(`Error ${response.status}: ${await errorText(response)}`); return; }
  state.offsets = await response.json();
  canvas.dataset.offsetPoints = String(state.offsets.layers.reduce((n, l) => n + l.points.length, 0));
  showLayerToggles();
  draw();
}

document.getElementById("file").addEventListener("change", e => {
  if (e.target.files.length) detect(e.target.files[0]);
});
const drop = document.getElementById("drop");
drop.addEventListener("dragover", e => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", e => {
  e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files.length) detect(e.dataTransfer.files[0]);
});
threshold.addEventListener("input", () => {
  document.getElementById("threshold-value").textContent = (+threshold.value).toFixed(2);
  draw();
});
canvas.addEventListener("click", e => {
  const rect = canvas.getBoundingClientRect();
  showOffsets((e.clientX - rect.left) * canvas.width / rect.width,
              (e.clientY - rect.top) * canvas.height / rect.height);
});
fetch("/readyz").then(r => r.json()).then(r => {
  document.getElementById("model").textContent = r.model ? `${r.model} · ${r.backend} · ${r.device}` : r.detail;
});
// The served models (the default one first); /detect gets the chosen one as ?model=.
fetch("/models").then(r => r.ok ? r.json() : { models: [] }).then(list => {
  const served = list.models.filter(m => m.versions.some(v => v.state === "READY"))
    .sort((a, b) => b.default - a.default);
  for (const m of served) {
    const ready = m.versions.filter(v => v.state === "READY");
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = `${m.name} v${ready[ready.length - 1].version} (${ready[ready.length - 1].classes.join(", ")})`;
    picker.append(option);
  }
  picker.dataset.models = String(served.length);
});
