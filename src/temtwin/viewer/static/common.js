/* temtwin viewer: shared helpers (no dependencies besides plotly.js). */
"use strict";
const TT = (function () {
  const data = JSON.parse(document.getElementById("temtwin-data").textContent);
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of kids.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    return e;
  }
  function fmt(v, digits) {
    if (v === null || v === undefined || v === "") return "";
    if (typeof v === "number") {
      if (!isFinite(v)) return String(v);
      if (Number.isInteger(v)) return String(v);
      const d = digits === undefined ? 4 : digits;
      return Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(d - 1) : String(+v.toPrecision(d));
    }
    if (Array.isArray(v)) return "[" + v.map((x) => fmt(x, digits)).join(", ") + "]";
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }
  const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
                   "#bcbd22", "#7f7f7f"];
  const colours = {};
  function phaseColour(phase) {
    if (!phase) return "#888888";
    if (!(phase in colours)) colours[phase] = PALETTE[Object.keys(colours).length % PALETTE.length];
    return colours[phase];
  }
  function kvTable(obj, cls) {
    const t = el("table", {class: cls || "kv"});
    for (const [k, v] of Object.entries(obj || {})) t.append(el("tr", {}, el("th", {text: k}), el("td", {text: fmt(v)})));
    return t;
  }
  function flatten(obj, prefix, out) {
    out = out || {};
    for (const [k, v] of Object.entries(obj || {})) {
      const key = prefix ? prefix + "." + k : k;
      if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, key, out);
      else out[key] = v;
    }
    return out;
  }
  const plotCfg = {responsive: true, displaylogo: false, scrollZoom: true};
  function havePlotly() {
    if (typeof Plotly === "undefined") { document.getElementById("plotly-missing").classList.remove("hidden"); return false; }
    return true;
  }
  return {data, el, fmt, phaseColour, kvTable, flatten, plotCfg, havePlotly};
})();
