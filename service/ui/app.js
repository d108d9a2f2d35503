// nnspec serve: the repository page (/) and the model pages (/models/NAME). Plain DOM, no framework, no CDN.
// Everything comes from the API with the API key when the server asks for one (401): the key is asked once,
// kept in this tab's sessionStorage and sent as `Authorization: Bearer`. Text is always set as text, never HTML,
// except the model card, which the server renders from Markdown with raw HTML escaped.
"use strict";

const KEY_ITEM = "nnspec-api-key";
const MAX_DRAW_SIDE = 64; // a drawing canvas for grayscale models up to this size (digits-like)

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function setStatus(text, isError = false) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = isError ? "error" : "";
  status.hidden = !text;
}

// --- the API key and requests ----------------------------------------------------------------

function apiKey() {
  return sessionStorage.getItem(KEY_ITEM);
}

let keyPrompt = null; // one prompt for every request waiting on a key

function askForKey(refused) {
  if (keyPrompt) return keyPrompt;
  const form = document.getElementById("key-form");
  const input = document.getElementById("api-key");
  document.getElementById("key-note").textContent = refused
    ? "The server refused that key. Enter the API key again."
    : "This server asks for an API key. It is kept in this browser tab only and sent as an Authorization: Bearer header.";
  form.hidden = false;
  setStatus("");
  input.value = "";
  input.focus();
  keyPrompt = new Promise((resolve) => {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY_ITEM, input.value.trim());
      form.hidden = true;
      keyPrompt = null;
      resolve();
    }, { once: true });
  });
  return keyPrompt;
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  const key = apiKey();
  if (key) headers.Authorization = "Bearer " + key;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    await askForKey(Boolean(key));
    return api(path, options);
  }
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { message = (await response.json()).error || message; } catch (error) { /* not JSON */ }
    throw Object.assign(new Error(message), { status: response.status });
  }
  return response;
}

async function apiJson(path, options) {
  return (await api(path, options)).json();
}

// --- formatting --------------------------------------------------------------------------------

function formatNumber(value) {
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return value.toLocaleString("en-US");
  return Math.abs(value) >= 1000 || Math.abs(value) < 0.001 ? value.toPrecision(4) : value.toFixed(4);
}

function metricText(metric) {
  return metric ? `${metric.name} ${formatNumber(metric.value)} (${metric.split})` : "—";
}

function badge(status) {
  return el("span", { class: "badge " + status.replace(" ", "-"), text: status });
}

function endpointLinks(name) {
  return [
    el("a", { href: `/v1/models/${name}`, text: "V1" }), " ",
    el("a", { href: `/v2/models/${name}`, text: "V2" }),
  ];
}

// --- the repository page -----------------------------------------------------------------------

async function repositoryPage(content) {
  document.title = "Models · nnspec serve";
  const { models } = await apiJson("/ui/api/models");
  setStatus(models.length ? "" : "The repository holds no model.");
  if (!models.length) return;
  const columns = ["Model", "Status", "Task", "Versions", "Metric", "Parameters", "Input", "Endpoints"];
  const rows = models.map((model) => {
    const cells = [
      el("a", { href: `/models/${model.name}`, text: model.name }),
      [badge(model.status), model.reason ? el("div", { class: "hint", text: model.reason }) : null],
      model.task || "—",
      model.versions.join(", ") + (model.served.length && model.served.length < model.versions.length
        ? ` (serving ${model.served.join(", ")})` : ""),
      metricText(model.metric),
      model.parameters != null ? formatNumber(model.parameters) : "—",
      model.input_kind || "—",
      endpointLinks(model.name),
    ];
    return el("tr", { "data-model": model.name },
      cells.map((cell, i) => el("td", { "data-label": columns[i], class: i === 5 ? "num" : null }, cell)));
  });
  content.append(el("div", { class: "table-wrap" },
    el("table", { class: "models" },
      el("caption", { class: "hint", text: `${models.length} model${models.length === 1 ? "" : "s"} in the repository` }),
      el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col", text: c })))),
      el("tbody", {}, rows))));
}

// --- the model page ----------------------------------------------------------------------------

function facts(pairs) {
  return el("dl", { class: "facts" }, pairs.map(([term, value]) => [el("dt", { text: term }), el("dd", {}, value)]));
}

function metricsTable(metrics) {
  const splits = ["validation", "test"].filter((split) => metrics && Object.keys(metrics[split] || {}).length);
  if (!splits.length) return el("p", { class: "muted", text: "No metrics were recorded for this version." });
  const names = [...new Set(splits.flatMap((split) => Object.keys(metrics[split])))];
  return el("div", { class: "table-wrap" }, el("table", {},
    el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "split" }), names.map((n) => el("th", { scope: "col", text: n })))),
    el("tbody", {}, splits.map((split) => el("tr", {},
      el("th", { scope: "row", text: split }),
      names.map((n) => el("td", { class: "num", text: n in metrics[split] ? formatNumber(metrics[split][n]) : "—" })))))));
}

function contract(model) {
  const items = [["graph input", `${model.input.name}: float32 ${JSON.stringify(model.input.shape)} per instance`
    + (model.features ? " (the server encodes the named features into it)" : "")]];
  if (model.features) {
    items.push(["features", el("ul", {}, model.features.map((f) => el("li", {},
      el("code", { text: f.name }), ` ${f.type}`,
      f.categories ? `: ${f.categories.map((c) => (c === null ? "(missing)" : c)).join(", ")}` : "",
      f.missing ? " — may be left empty" : ""))) ]);
  }
  if (model.image) items.push(["image", `${model.image.size.join("x")} ${model.image.color}, any size or format is converted and resized`]);
  if (model.labels) items.push(["labels", model.labels.join(", ")]);
  if (model.targets) items.push(["targets", model.targets.join(", ")]);
  items.push(["rows per request", String(model.max_batch_size)]);
  return facts(items);
}

async function plotFigures(model) {
  const titles = { "curves.png": "Training curves", "confusion.png": "Confusion matrix" };
  const figures = [];
  for (const plot of model.plots) {
    const blob = await (await api(`/ui/api/models/${model.name}/versions/${model.version}/plots/${plot}`)).blob();
    figures.push(el("figure", {},
      el("img", { src: URL.createObjectURL(blob), alt: `${titles[plot]} of ${model.name} version ${model.version}` }),
      el("figcaption", { class: "hint", text: titles[plot] })));
  }
  return figures;
}

async function modelPage(content, name) {
  document.title = `${name} · nnspec serve`;
  document.getElementById("title").textContent = name;
  let model;
  try {
    model = await apiJson(`/ui/api/models/${encodeURIComponent(name)}`);
  } catch (failure) {
    // Not served: say what the repository knows of it (failed, with the reason; loading; not loaded).
    const row = failure.status === 404 && (await apiJson("/ui/api/models")).models.find((m) => m.name === name);
    if (!row) throw failure;
    content.append(facts([["status", [badge(row.status), row.reason ? " " + row.reason : ""]],
      ["versions", row.versions.join(", ")], ["task", row.task || "—"], ["input", row.input_kind || "—"]]));
    throw new Error(`${name} serves no version now.`);
  }
  setStatus("");
  document.getElementById("title").textContent = `${model.name} — version ${model.version}`;
  const answer = el("section", { id: "answer", "aria-live": "polite", "aria-labelledby": "answer-heading", hidden: true });
  content.append(
    facts([
      ["task", model.task],
      ["versions", model.versions.join(", ") + ` (this page: ${model.version})`],
      ["metric", metricText(model.metric)],
      ["parameters", model.parameters != null ? formatNumber(model.parameters) : "—"],
      ["input", model.input_kind],
      ["exported", model.created || "—"],
      ["endpoints", [el("code", { text: `POST /v1/models/${model.name}:predict` }), " · ",
        el("code", { text: `POST /v2/models/${model.name}/infer` }), " · ", ...endpointLinks(model.name)]],
    ]),
    el("div", { class: "split" },
      el("section", { class: "card", "aria-labelledby": "try-heading" },
        el("h2", { id: "try-heading", text: "Try it" }), tryForm(model, answer)),
      answer),
    el("h2", { text: "Metrics" }), metricsTable(model.metrics),
  );
  if (model.plots.length) {
    const plots = el("div", { class: "plots" });
    content.append(el("h2", { text: "Training" }), plots);
    plots.append(...(await plotFigures(model)));
  }
  content.append(el("h2", { text: "Input contract" }), contract(model));
  if (model.card) {
    const card = el("section", { class: "model-card", "aria-label": "Model card" });
    card.innerHTML = model.card; // rendered by the server from the version's README.md, raw HTML escaped
    content.append(el("h2", { text: "Model card" }), card);
  }
}

// --- the try-it form ---------------------------------------------------------------------------

function tryForm(model, answer) {
  const form = el("form", { id: "try-form", novalidate: true });
  const error = el("p", { class: "error", role: "alert", hidden: true });
  let request; // () => {url, options, curl} for the current input
  if (model.features) request = tableInputs(form, model);
  else if (model.image) request = imageInputs(form, model, (send) => submit(send));
  else request = arrayInput(form, model);
  form.append(error, el("div", { class: "row" }, el("button", { type: "submit", text: model.image ? "Classify the file" : "Predict" })));

  async function submit(send) {
    error.hidden = true;
    try {
      const { url, options, curl } = await send();
      const { predictions } = await apiJson(url, options);
      showAnswer(answer, model, predictions[0], curl);
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit(request);
  });
  return form;
}

function curlCommand(url, parts) {
  const auth = apiKey() ? [`-H "Authorization: Bearer $NNSPEC_API_KEY"`] : [];
  return ["curl -s -X POST " + location.origin + url, ...auth, ...parts].join(" \\\n  ");
}

function shellQuote(text) {
  return "'" + text.replace(/'/g, "'\\''") + "'";
}

function jsonRequest(model, instance) {
  const url = `/v1/models/${model.name}:predict`;
  const body = JSON.stringify({ instances: [instance] });
  return {
    url,
    options: { method: "POST", headers: { "Content-Type": "application/json" }, body },
    curl: curlCommand(url, [`-H 'Content-Type: application/json'`, "-d " + shellQuote(body)]),
  };
}

function tableInputs(form, model) {
  const fields = el("div", { class: "fields" });
  model.features.forEach((feature, i) => {
    const id = `feature-${i}`;
    const optional = Boolean(feature.missing);
    let input;
    if (feature.type === "categorical") {
      const choices = feature.categories.filter((c) => c !== null);
      input = el("select", { id, name: feature.name, required: !optional },
        optional ? el("option", { value: "", text: "(missing)" }) : null,
        choices.map((c) => el("option", { value: c, text: c })));
    } else {
      input = el("input", { id, name: feature.name, type: "number", step: "any", inputmode: "decimal",
        required: !optional, placeholder: optional ? "empty: missing" : null });
    }
    fields.append(el("div", {}, el("label", { for: id, text: feature.name }), input));
  });
  form.append(fields);
  return () => {
    const instance = {};
    for (const [i, feature] of model.features.entries()) {
      const input = form.querySelector(`#feature-${i}`);
      const raw = input.value.trim();
      if (raw === "") {
        if (!feature.missing) throw new Error(`${feature.name}: a value is needed`);
        instance[feature.name] = null;
      } else if (feature.type === "categorical") {
        instance[feature.name] = raw;
      } else {
        const value = Number(raw);
        if (!Number.isFinite(value)) throw new Error(`${feature.name}: expected a number, got ${raw}`);
        instance[feature.name] = value;
      }
    }
    return jsonRequest(model, instance);
  };
}

function arrayInput(form, model) {
  const example = model.example ?? zeros(model.input.shape);
  const textarea = el("textarea", { id: "instance", name: "instance", rows: 6, spellcheck: "false",
    "aria-describedby": "instance-hint" });
  textarea.value = JSON.stringify(example);
  form.append(
    el("label", { for: "instance", text: "Instance (a JSON array)" }),
    el("p", { id: "instance-hint", class: "hint",
      text: `Shape ${JSON.stringify(model.input.shape)}. ` + (model.example
        ? "Filled in with a real validation row kept by the export."
        : "Filled in with zeros: this version's manifest keeps no example row.") }),
    textarea);
  return () => {
    let instance;
    try { instance = JSON.parse(textarea.value); } catch (failure) { throw new Error("the instance is not valid JSON"); }
    return jsonRequest(model, instance);
  };
}

function zeros(shape) {
  return shape.length ? Array.from({ length: shape[0] }, () => zeros(shape.slice(1))) : 0;
}

function fileRequest(model, blob, filename) {
  const url = `/v1/models/${model.name}:classify`;
  const body = new FormData();
  body.append("files", blob, filename);
  // No Content-Type header: the browser writes multipart/form-data with its boundary.
  return { url, options: { method: "POST", body }, curl: curlCommand(url, ["-F " + shellQuote("files=@" + filename)]) };
}

function imageInputs(form, model, send) {
  const [height, width] = model.image.size;
  const file = el("input", { id: "image-file", name: "image-file", type: "file", accept: "image/*",
    "aria-describedby": "image-hint" });
  const drop = el("div", { class: "drop" },
    el("label", { for: "image-file", text: "Image file" }),
    el("p", { id: "image-hint", class: "hint",
      text: `Choose or drop an image here; it is converted to ${model.image.color} and resized to ${width}x${height}.` }),
    file);
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) {
      file.files = event.dataTransfer.files;
      form.requestSubmit();
    }
  });
  form.append(drop);
  if (model.image.color === "grayscale" && Math.max(height, width) <= MAX_DRAW_SIDE) {
    form.append(drawingPad(model, send));
  }
  return () => {
    if (!file.files.length) throw new Error("choose an image file first");
    return fileRequest(model, file.files[0], file.files[0].name);
  };
}

function drawingPad(model, send) {
  const [height, width] = model.image.size;
  const side = 280;
  const canvas = el("canvas", { class: "draw", id: "draw", width: side, height: Math.round(side * height / width),
    role: "img", "aria-label": "Drawing area: draw with a mouse, a finger or a pen" });
  const ink = el("select", { id: "ink", name: "ink" },
    el("option", { value: "white", text: "white on black" }), el("option", { value: "black", text: "black on white" }));
  const context = canvas.getContext("2d");
  const clear = () => {
    context.fillStyle = ink.value === "white" ? "#000" : "#fff";
    context.fillRect(0, 0, canvas.width, canvas.height);
  };
  clear();
  ink.addEventListener("change", clear);
  let last = null;
  const point = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
  };
  canvas.addEventListener("pointerdown", (event) => {
    canvas.setPointerCapture(event.pointerId);
    last = point(event);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!last) return;
    const next = point(event);
    context.strokeStyle = ink.value;
    context.lineWidth = canvas.width / width * 1.4; // about one and a half model pixels
    context.lineCap = context.lineJoin = "round";
    context.beginPath();
    context.moveTo(...last);
    context.lineTo(...next);
    context.stroke();
    last = next;
  });
  for (const type of ["pointerup", "pointercancel"]) canvas.addEventListener(type, () => { last = null; });

  const classify = el("button", { type: "button", id: "classify-drawing", text: "Classify the drawing" });
  classify.addEventListener("click", () => send(() => new Promise((resolve) => {
    const small = el("canvas", { width, height }); // the model's size: what the server would resize to
    const smallContext = small.getContext("2d");
    smallContext.imageSmoothingQuality = "high";
    smallContext.drawImage(canvas, 0, 0, width, height);
    small.toBlob((blob) => resolve(fileRequest(model, blob, "drawing.png")), "image/png");
  })));
  const clearButton = el("button", { type: "button", class: "secondary", text: "Clear" });
  clearButton.addEventListener("click", clear);
  return el("fieldset", { class: "card" },
    el("legend", { text: "Or draw" }),
    el("p", { class: "hint", text: `Scaled to ${width}x${height} before it is sent.` }),
    canvas,
    el("label", { for: "ink", text: "Colours" }), ink,
    el("div", { class: "row" }, classify, clearButton));
}

// --- the answer --------------------------------------------------------------------------------

function showAnswer(answer, model, prediction, curl) {
  answer.replaceChildren(el("h2", { id: "answer-heading", text: "Answer" }));
  if ("label" in prediction) {
    answer.append(el("p", { class: "answer-label" }, "Label: ", el("strong", { id: "answer-label", text: prediction.label })));
    const bars = el("div", { class: "bars" });
    const entries = Object.entries(prediction.probabilities).sort((a, b) => b[1] - a[1]);
    for (const [label, probability] of entries) {
      const fill = el("span");
      fill.style.width = (100 * probability).toFixed(1) + "%";
      bars.append(el("span", { text: label }),
        el("span", { class: "bar", "aria-hidden": "true" }, fill),
        el("span", { class: "value", text: (100 * probability).toFixed(1) + " %" }));
    }
    answer.append(el("h3", { text: "Class probabilities" }), bars);
  } else {
    answer.append(el("h3", { text: "Values" }), el("table", {}, el("tbody", {},
      Object.entries(prediction.values).map(([target, value]) =>
        el("tr", {}, el("th", { scope: "row", text: target }), el("td", { class: "num", "data-target": target, text: formatNumber(value) }))))));
  }
  answer.append(el("h3", { text: "The same request with curl" }), el("pre", {}, el("code", { id: "curl", text: curl })));
  answer.hidden = false;
}

// --- start -------------------------------------------------------------------------------------

async function start() {
  const content = document.getElementById("content");
  const match = location.pathname.match(/^\/models\/([^/]+)\/?$/);
  try {
    if (match) await modelPage(content, decodeURIComponent(match[1]));
    else await repositoryPage(content);
  } catch (failure) {
    setStatus(failure.message, true);
  }
  document.body.dataset.ready = "true"; // for tests and screenshots: the page has drawn what it had
}

start();
