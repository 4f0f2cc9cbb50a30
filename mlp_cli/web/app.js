// The page of `mlp serve`: a drawing pad, and the network's answer for what is drawn.
// Everything shown about the network comes from the server's JSON API; text from it is
// set with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const ink = pad.getContext("2d");
const PEN = 18; // px on the 280 px pad: about MNIST's stroke width once scaled to 28
const DEBOUNCE = 80; // ms between predictions while drawing

let strokes = []; // each a list of [x, y] in pad pixels
let current = null;
let upload = null; // {blob, type, image} when a file was dropped or chosen
let run = null; // the run shown (null: the server's default)
let facts = null;
let unitsImage = null;
let timer = null;
let busy = false;
let again = false;
let generation = 0; // answers to older drawings are dropped
let choice = 0; // answers about a model chosen before the newest are dropped

function query() {
  return run ? "?run=" + encodeURIComponent(run) : "";
}

// -- drawing ---------------------------------------------------------------------------

function redraw() {
  ink.fillStyle = "#fff";
  ink.fillRect(0, 0, pad.width, pad.height);
  if (upload) {
    const s = Math.min(pad.width / upload.image.width, pad.height / upload.image.height);
    const w = upload.image.width * s, h = upload.image.height * s;
    ink.drawImage(upload.image, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
  }
  ink.strokeStyle = "#000";
  ink.fillStyle = "#000";
  ink.lineCap = "round";
  ink.lineJoin = "round";
  ink.lineWidth = PEN;
  for (const stroke of strokes) {
    if (stroke.length === 1) {
      ink.beginPath();
      ink.arc(stroke[0][0], stroke[0][1], PEN / 2, 0, 2 * Math.PI);
      ink.fill();
      continue;
    }
    ink.beginPath();
    ink.moveTo(stroke[0][0], stroke[0][1]);
    for (const [x, y] of stroke.slice(1)) ink.lineTo(x, y);
    ink.stroke();
  }
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return [
    ((event.clientX - box.left) * pad.width) / box.width,
    ((event.clientY - box.top) * pad.height) / box.height,
  ];
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  current = [point(event)];
  strokes.push(current);
  redraw();
  schedule();
});
pad.addEventListener("pointermove", (event) => {
  if (!current) return;
  // Coalesced events keep fast strokes smooth where the browser batches them.
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of events.length ? events : [event]) current.push(point(e));
  redraw();
  schedule();
});
for (const name of ["pointerup", "pointercancel"]) {
  pad.addEventListener(name, () => {
    if (!current) return;
    current = null;
    predictNow();
  });
}

const HINT = $("hint").textContent; // shown while no file is on the pad

function forgetUpload() {
  upload = null;
  $("file").value = ""; // so that choosing the same file again is a change
  $("hint").textContent = HINT;
}

$("clear").addEventListener("click", () => {
  strokes = [];
  forgetUpload();
  redraw();
  showEmpty();
});
$("undo").addEventListener("click", () => {
  if (strokes.length) strokes.pop();
  else forgetUpload();
  redraw();
  predictNow();
});

// -- uploads ---------------------------------------------------------------------------

function useFile(file) {
  if (!file) return;
  const url = URL.createObjectURL(file);
  const image = new Image();
  image.onload = () => {
    URL.revokeObjectURL(url);
    strokes = [];
    upload = { blob: file, type: file.type || "application/octet-stream", image };
    redraw();
    $("hint").textContent = "Predicting the uploaded file " + file.name + "; draw over it, or Clear.";
    predictNow();
  };
  image.onerror = () => {
    URL.revokeObjectURL(url);
    // The browser cannot show it; the server may still read it (TIFF), or say why not.
    strokes = [];
    upload = null;
    redraw();
    send(file, file.type || "application/octet-stream");
  };
  image.src = url;
}
$("file").addEventListener("change", (event) => useFile(event.target.files[0]));
pad.addEventListener("dragover", (event) => {
  event.preventDefault();
  pad.classList.add("drop");
});
pad.addEventListener("dragleave", () => pad.classList.remove("drop"));
pad.addEventListener("drop", (event) => {
  event.preventDefault();
  pad.classList.remove("drop");
  useFile(event.dataTransfer.files[0]);
});

// -- predictions -----------------------------------------------------------------------

// body[data-busy] is "1" while an answer is due (for tests and for the cursor).
function setBusy(flag) {
  document.body.dataset.busy = flag ? "1" : "0";
}

function schedule() {
  clearTimeout(timer);
  setBusy(true);
  timer = setTimeout(predictNow, DEBOUNCE);
}

function predictNow() {
  clearTimeout(timer);
  timer = null;
  if (!strokes.length && !upload) {
    showEmpty();
    return;
  }
  setBusy(true);
  if (upload && !strokes.length) {
    send(upload.blob, upload.type); // the file's own bytes, as `mlp predict` would read them
    return;
  }
  pad.toBlob((blob) => send(blob, "image/png"), "image/png");
}

async function send(body, type) {
  if (busy) {
    again = true; // one request at a time; the newest drawing goes next
    return;
  }
  busy = true;
  setBusy(true);
  const mine = ++generation;
  try {
    const response = await fetch("/api/predict" + query(), {
      method: "POST",
      headers: { "Content-Type": type },
      body,
    });
    const answer = await response.json();
    if (mine !== generation) return;
    if (!response.ok) showError(answer.error || response.statusText);
    else showAnswer(answer);
  } catch (error) {
    showError("the server did not answer: " + error);
  } finally {
    busy = false;
    if (again) {
      again = false;
      predictNow();
    } else if (!timer) {
      setBusy(false);
    }
  }
}

function showError(message) {
  $("error").textContent = message;
}

function showEmpty() {
  generation++;
  if (!busy) setBusy(false);
  $("digit").textContent = "–";
  $("digit").title = "";
  $("probability").textContent = "";
  $("error").textContent = "";
  for (const li of $("bars").children) {
    li.classList.remove("best");
    li.querySelector(".fill").style.width = "0";
    li.querySelector(".value").textContent = "";
    li.dataset.p = "";
  }
  const preview = $("preview");
  preview.getContext("2d").clearRect(0, 0, preview.width, preview.height);
  preview.dataset.drawn = "";
  $("hidden").replaceChildren();
  $("hidden").dataset.drawn = "";
  drawUnits(null);
}

// Whole percents at the ends, but never a doubt rounded up to "100%" or a chance down to
// "0%", as the gallery of `mlp evaluate --misclassified` and the terminal say them.
function percent(p) {
  if (p >= 0.995 && p < 1) return ">99.5%";
  if (p > 0 && p < 0.001) return "<0.1%";
  return (100 * p).toFixed(p >= 0.995 || p < 0.001 ? 0 : 1) + "%";
}

function buildBars(names) {
  const bars = $("bars");
  bars.replaceChildren();
  for (const name of names) {
    const li = document.createElement("li");
    li.dataset.name = name;
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name;
    label.title = name; // whole, where the label is cut short
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    track.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    li.append(label, track, value);
    bars.append(li);
  }
}

function showAnswer(answer) {
  $("error").textContent = "";
  $("digit").textContent = answer.class_name;
  $("digit").title = answer.class_name; // whole, where it is cut short
  $("probability").textContent = percent(answer.probability);
  for (const li of $("bars").children) {
    const p = answer.probabilities[li.dataset.name];
    li.dataset.p = String(p);
    li.classList.toggle("best", li.dataset.name === answer.class_name);
    li.querySelector(".fill").style.width = (100 * p).toFixed(2) + "%";
    li.querySelector(".value").textContent = percent(p);
  }
  drawPreview(answer.input);
  drawHidden(answer.hidden);
  drawUnits(answer.hidden.length ? answer.hidden[0] : null);
}

function drawPreview(rows) {
  const preview = $("preview");
  const side = rows.length;
  const small = new ImageData(side, side);
  rows.forEach((row, y) =>
    row.forEach((v, x) => {
      const i = 4 * (y * side + x), g = Math.round(255 * v);
      small.data[i] = small.data[i + 1] = small.data[i + 2] = g;
      small.data[i + 3] = 255;
    }),
  );
  const scratch = document.createElement("canvas");
  scratch.width = scratch.height = side;
  scratch.getContext("2d").putImageData(small, 0, 0);
  const ctx = preview.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(scratch, 0, 0, preview.width, preview.height);
  preview.dataset.drawn = "1";
}

function activationColour(v, scale) {
  const t = scale > 0 ? Math.min(1, Math.abs(v) / scale) : 0;
  const [r, g, b] = v >= 0 ? [232, 89, 12] : [28, 126, 214];
  const mix = (c) => Math.round(246 + (c - 246) * t);
  return `rgb(${mix(r)},${mix(g)},${mix(b)})`;
}

// The largest magnitude in `values`: a loop, as a layer may have more units than a call
// takes arguments (Math.max(...values)).
function largest(values) {
  return values.reduce((top, v) => Math.max(top, Math.abs(v)), 0);
}

function drawHidden(layers) {
  const box = $("hidden");
  box.replaceChildren();
  if (!layers.length) {
    const p = document.createElement("p");
    p.className = "small";
    p.textContent = "This model has no hidden layer: the input goes straight to the ten outputs.";
    box.append(p);
  }
  const width = Math.max(200, box.clientWidth || 600);
  layers.forEach((values, k) => {
    const scale = largest(values);
    const n = values.length;
    const cols = Math.min(n, Math.max(10, Math.floor(width / 14)));
    const cell = Math.max(4, Math.min(24, Math.floor(width / cols)));
    const canvas = document.createElement("canvas");
    canvas.width = cols * cell;
    canvas.height = Math.ceil(n / cols) * cell;
    const ctx = canvas.getContext("2d");
    values.forEach((v, i) => {
      ctx.fillStyle = activationColour(v, scale);
      ctx.fillRect((i % cols) * cell, Math.floor(i / cols) * cell, cell - 1, cell - 1);
    });
    const active = values.filter((v) => scale > 0 && Math.abs(v) > 0.05 * scale).length;
    const label = document.createElement("p");
    label.className = "small";
    label.textContent = `hidden layer ${k + 1}: ${n} units, ${active} firing (above 5% of the strongest, ${scale.toPrecision(3)})`;
    const div = document.createElement("div");
    div.className = "layer";
    div.append(label, canvas);
    box.append(div);
  });
  box.dataset.drawn = "1";
}

function drawUnits(activations) {
  const canvas = $("units");
  if (!facts || !unitsImage) return;
  const { count, side, columns } = facts.units;
  const width = Math.max(200, canvas.parentElement.clientWidth - 24);
  const rows = Math.ceil(count / columns);
  // Big grids stay within about one screen; small ones get tiles large enough to read.
  const tile = Math.max(6, Math.min(56, Math.floor(width / columns), Math.floor(640 / rows)));
  const gap = tile >= 16 ? 2 : 1;
  canvas.width = columns * tile;
  canvas.height = Math.ceil(count / columns) * tile;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  let scale = 0;
  let top = new Set();
  if (activations) {
    scale = largest(activations);
    const order = activations.map((v, i) => [v, i]).sort((a, b) => b[0] - a[0]);
    top = new Set(order.slice(0, 10).filter(([v]) => v > 0).map(([, i]) => i));
  }
  for (let i = 0; i < count; i++) {
    const sx = (i % columns) * side, sy = Math.floor(i / columns) * side;
    const dx = (i % columns) * tile, dy = Math.floor(i / columns) * tile;
    ctx.globalAlpha = activations && scale > 0 ? 0.12 + 0.88 * Math.max(0, activations[i]) / scale : 1;
    ctx.drawImage(unitsImage, sx, sy, side, side, dx, dy, tile - gap, tile - gap);
    if (top.has(i)) {
      ctx.globalAlpha = 1;
      ctx.strokeStyle = "#0a0";
      ctx.lineWidth = 2;
      ctx.strokeRect(dx + 1, dy + 1, tile - gap - 2, tile - gap - 2);
    }
  }
  ctx.globalAlpha = 1;
  drawTop(activations, [...top]);
}

function drawTop(activations, units) {
  const box = $("top");
  box.replaceChildren();
  const { side, columns, count } = facts.units;
  units.sort((a, b) => activations[b] - activations[a]);
  $("top-title").textContent = units.length
    ? `The ${units.length} units that fire most for your drawing (unit number · activation):`
    : "";
  $("all-title").textContent = activations
    ? `All ${count} units, faded by how little they fire now:`
    : `All ${count} units:`;
  for (const i of units) {
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = side;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(unitsImage, (i % columns) * side, Math.floor(i / columns) * side, side, side, 0, 0, side, side);
    const figure = document.createElement("figure");
    const caption = document.createElement("figcaption");
    caption.textContent = `#${i} · ${activations[i].toPrecision(2)}`;
    figure.append(canvas, caption);
    box.append(figure);
  }
}

// -- the model -------------------------------------------------------------------------

function describe(f) {
  const parts = [
    f.name + ": " + f.layers.join("-"),
    f.layers.length > 2 ? f.hidden_activation + " hidden units" : "no hidden layer",
    f.output_activation + " output",
    f.parameters.toLocaleString("en") + " parameters",
    f.input_size === 28 ? "28×28 input" : `${f.input_size}×${f.input_size} input (the 28×28 picture area-averaged)`,
  ];
  if (f.val_accuracy != null) parts.push("validation accuracy " + percent(f.val_accuracy) + " (test accuracy not recorded: mlp evaluate)");
  if (f.epochs != null) parts.push(f.epochs + " epochs");
  if (f.created) parts.push("trained " + f.created.replace("T", " ").replace(/\+00:00$/, " UTC"));
  return parts.join(" · ");
}

function loadImage(url) {
  return new Promise((resolve) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => resolve(null);
    image.src = url;
  });
}

async function loadModel() {
  setBusy(true);
  generation++; // answers from the previous model are dropped
  const mine = ++choice;
  let response, image, answer;
  try {
    [response, image] = await Promise.all([
      fetch("/api/model" + query()),
      loadImage("/api/units.png" + query()),
    ]);
    answer = await response.json();
  } catch (error) {
    response = null;
    answer = { error: "the server did not answer: " + error };
  }
  if (mine !== choice) return;
  if (!response || !response.ok) {
    $("facts").textContent = answer.error;
    setBusy(false);
    return;
  }
  // Facts and pictures change together, so no panel mixes two models.
  facts = answer;
  unitsImage = image;
  $("facts").textContent = describe(facts);
  $("units-title").textContent = facts.units.output
    ? "Output units: the template each digit is matched against"
    : `First hidden layer: what each of its ${facts.units.count} units looks for`;
  buildBars(facts.class_names);
  drawUnits(null);
  predictNow();
}

async function loadRuns() {
  const select = $("run");
  let answer;
  try {
    answer = await (await fetch("/api/runs")).json();
  } catch (error) {
    const option = document.createElement("option");
    option.textContent = "runs not listed: the server did not answer (" + error + ")";
    select.append(option);
    return;
  }
  const names = answer.runs.includes(answer.current) ? answer.runs : [answer.current, ...answer.runs];
  for (const name of names) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name;
    option.selected = name === answer.current;
    select.append(option);
  }
  select.addEventListener("change", () => {
    run = select.value === answer.current ? null : select.value;
    loadModel();
  });
}

setBusy(false);
redraw();
loadRuns();
loadModel();
