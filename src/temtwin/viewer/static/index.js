/* temtwin index page: every sample and region of summary.tsv, filters and distributions. */
"use strict";
(function () {
  const {data, el, fmt, phaseColour, plotCfg} = TT;
  const hasPlotly = TT.havePlotly();
  const rows = data.rows.map((r, i) => Object.assign({_i: i}, r));
  const uniq = (k) => [...new Set(rows.map((r) => r[k] === null || r[k] === undefined ? "" : String(r[k])))].sort();
  const link = (r) => data.pages.includes(String(r.sample))
    ? `${encodeURIComponent(r.sample)}/viewer.html#${encodeURIComponent(r.image)}/${r.region}` : null;
  const filt = {phase: "", layer: "", sample: ""};
  function sel(id, label, values, key) {
    const s = el("select", {id: id, onchange: () => { filt[key] = s.value; update(); }},
      el("option", {value: "", text: "all"}), values.map((v) => el("option", {value: v, text: v === "" ? "(none)" : v})));
    return el("label", {}, label + " ", s);
  }
  document.getElementById("filters").append(
    sel("filter-phase", "phase", uniq("phase"), "phase"),
    sel("filter-layer", "layer (" + data.layer + ")", uniq(data.layer), "layer"),
    sel("filter-sample", "sample", uniq("sample"), "sample"),
    el("label", {}, "distribution of ", el("select", {id: "dist-column", onchange: () => update()},
      data.numeric.filter((c) => !["region"].includes(c)).map((c) => el("option", {value: c, text: c, selected: c === (data.numeric.includes("scale_factor") ? "scale_factor" : data.numeric[0])})))),
    el("span", {id: "count"}));
  const show = ["sample", "image", "region", "phase", "zone_axis", "identified", "ambiguous", "state", "override", "confidence", "phase_score",
    ...data.strain.flatMap((s) => [s.mean, s.err]).filter((x) => x), ...data.lattice, "area_nm2"]
    .filter((c, i, a) => c && a.indexOf(c) === i && data.columns.includes(c));
  if (data.layer !== "image" && !show.includes(data.layer)) show.splice(3, 0, data.layer);
  function selected() {
    return rows.filter((r) => (!filt.phase || String(r.phase ?? "") === filt.phase) &&
      (!filt.layer || String(r[data.layer] ?? "") === filt.layer) && (!filt.sample || String(r.sample) === filt.sample));
  }
  function table(sel) {
    const t = el("table", {id: "regions-table"}, el("tr", {}, show.map((c) => el("th", {text: c})), el("th", {text: "page"})));
    for (const r of sel) {
      const href = link(r);
      t.append(el("tr", {"data-key": `${r.sample}/${r.image}/${r.region}`}, show.map((c) => el("td", {text: fmt(r[c])})),
        el("td", {}, href ? el("a", {href: href, text: "open"}) : "")));
    }
    document.getElementById("table-wrap").replaceChildren(el("h2", {text: "Regions"}), t);
    document.getElementById("count").textContent = `${sel.length} of ${rows.length} rows`;
  }
  const plots = document.getElementById("plots");
  const divs = {};
  function plotDiv(id, title) {
    if (!divs[id]) { divs[id] = el("div", {class: "plot", id: id}); plots.append(el("div", {class: "card"}, el("h2", {text: title}), divs[id])); }
    return divs[id];
  }
  function keyOf(r) { return `${r.sample}/${r.image}/${r.region}`; }
  function clickable(div) {
    if (div._tt) return; div._tt = true;
    div.on("plotly_click", (ev) => { const p = ev.points && ev.points[0]; const href = p && p.customdata; if (href) location.href = href; });
  }
  function update() {
    const sel = selected();
    table(sel);
    if (!hasPlotly) return;
    const byPhase = {};
    for (const r of sel) (byPhase[r.phase || "(none)"] = byPhase[r.phase || "(none)"] || []).push(r);
    const layout = (yt) => ({margin: {l: 60, r: 10, t: 10, b: 90}, xaxis: {type: "category", tickangle: -45}, yaxis: {title: yt},
      legend: {orientation: "h", y: 1.12}});
    if (data.strain.length) {
      const traces = [];
      for (const s of data.strain) {
        const rs = sel.filter((r) => typeof r[s.mean] === "number");
        traces.push({type: "scatter", mode: "markers", name: s.name + (s.err ? ` ± ${s.err.split(".").pop()}` : ""),
          x: rs.map(keyOf), y: rs.map((r) => r[s.mean]), customdata: rs.map(link),
          error_y: s.err ? {type: "data", array: rs.map((r) => r[s.err] ?? 0), visible: true} : undefined,
          text: rs.map((r) => `${keyOf(r)} ${r.phase || ""}`), hoverinfo: "text+y"});
      }
      const d = plotDiv("plot-strain", "Strain per region (mean with error bars)");
      Plotly.react(d, traces, layout("strain (1; rotation in deg)"), plotCfg).then(() => clickable(d));
    }
    {
      const c = document.getElementById("dist-column").value;
      const traces = Object.entries(byPhase).map(([ph, rs]) => { const ok = rs.filter((r) => typeof r[c] === "number");
        return {type: "scatter", mode: "markers", name: ph, marker: {color: phaseColour(ph), size: 9},
          x: ok.map(keyOf), y: ok.map((r) => r[c]), customdata: ok.map(link)}; });
      const d = plotDiv("plot-column", "Any column per region");
      Plotly.react(d, traces, layout(c), plotCfg).then(() => clickable(d));
    }
    if (!data.lattice.length) plotDiv("plot-lattice", "Lattice parameters").replaceChildren(
      el("p", {class: "hint", text: "summary.tsv has no lattice-parameter columns (lattice*, a_nm, d_spacing, a_from_g)"}));
    if (data.lattice.length) {
      const traces = data.lattice.map((c) => { const rs = sel.filter((r) => typeof r[c] === "number");
        return {type: "scatter", mode: "markers", name: c, x: rs.map(keyOf), y: rs.map((r) => r[c]), customdata: rs.map(link)}; });
      const d = plotDiv("plot-lattice", "Lattice parameters");
      Plotly.react(d, traces, layout("nm"), plotCfg).then(() => clickable(d));
    }
    if (data.confidence) {
      const traces = Object.entries(byPhase).map(([ph, rs]) => {
        const ok = rs.filter((r) => typeof r[data.confidence] === "number");
        return {type: "scatter", mode: "markers", name: ph, marker: {color: phaseColour(ph), size: 9},
          x: ok.map(keyOf), y: ok.map((r) => r[data.confidence]), customdata: ok.map(link)};
      });
      const d = plotDiv("plot-confidence", "Identification confidence");
      const lay = layout("confidence"); lay.yaxis.range = [0, 1.05];
      Plotly.react(d, traces, lay, plotCfg).then(() => clickable(d));
    }
  }
  update();
})();
