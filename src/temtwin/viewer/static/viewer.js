/* temtwin sample page: images with regions, region panel (FFT, candidates, strain), corrections. */
"use strict";
(function () {
  const {data, el, fmt, phaseColour, kvTable, flatten, plotCfg} = TT;
  const hasPlotly = TT.havePlotly();
  const imagesByName = Object.fromEntries(data.images.map((im) => [im.name, im]));
  // ---------------------------------------------------------------- corrections (overrides.yaml)
  const OV = {sample: data.sample, images: JSON.parse(JSON.stringify((data.overrides || {}).images || {}))};
  function ovImage(im) { return (OV.images[im] = OV.images[im] || {}); }
  function setAction(im, label, entry) {
    const e = ovImage(im); e.regions = e.regions || {};
    if (entry) e.regions[label] = entry; else delete e.regions[label];
    if (!Object.keys(e.regions).length) delete e.regions;
    cleanup(im); renderOverrides(); showRegion(im, label);
  }
  function addMerge(im, a, b) {
    const e = ovImage(im); e.merge = e.merge || [];
    const pair = [Math.min(+a, +b), Math.max(+a, +b)];
    if (pair[0] !== pair[1] && !e.merge.some((p) => p[0] === pair[0] && p[1] === pair[1])) e.merge.push(pair);
    cleanup(im); renderOverrides(); showRegion(im, String(pair[0]));
  }
  function removeMerge(im, i) { ovImage(im).merge.splice(i, 1); cleanup(im); renderOverrides(); }
  function cleanup(im) {
    const e = OV.images[im]; if (!e) return;
    if (e.merge && !e.merge.length) delete e.merge;
    if (!Object.keys(e).length) delete OV.images[im];
  }
  function q(s) { return JSON.stringify(String(s)); }
  function overridesYaml() {
    const lines = ["# temtwin corrections for sample " + data.sample + " (made in viewer.html)",
      "# save as: " + (data.sample_dir ? data.sample_dir + "/overrides.yaml" : "<dataset>/" + data.sample + "/overrides.yaml"),
      "# then rerun the workflow: only the affected segment / phase_id jobs and what depends on them rerun",
      "sample: " + q(data.sample)];
    const ims = Object.keys(OV.images).sort();
    if (!ims.length) { lines.push("images: {}"); return lines.join("\n") + "\n"; }
    lines.push("images:");
    for (const im of ims) {
      const e = OV.images[im];
      lines.push("  " + q(im) + ":");
      if (e.regions) {
        lines.push("    regions:");
        for (const lab of Object.keys(e.regions).sort((a, b) => a - b)) {
          const r = e.regions[lab];
          const parts = ["action: " + r.action];
          if (r.action === "pick") parts.push("phase: " + q(r.phase), "zone_axis: [" + r.zone_axis.join(", ") + "]");
          if (r.note) parts.push("note: " + q(r.note));
          lines.push("      " + q(lab) + ": {" + parts.join(", ") + "}");
        }
      }
      if (e.merge) {
        lines.push("    merge:");
        for (const p of e.merge) lines.push("      - [" + p[0] + ", " + p[1] + "]");
      }
    }
    return lines.join("\n") + "\n";
  }
  function download() {
    const blob = new Blob([overridesYaml()], {type: "text/yaml"});
    const a = el("a", {href: URL.createObjectURL(blob), download: "overrides.yaml"});
    document.body.append(a); a.click(); a.remove();
  }
  function renderOverrides() {
    const box = document.getElementById("overrides");
    box.replaceChildren();
    const card = el("div", {class: "card"}, el("h2", {text: "Corrections → overrides.yaml"}));
    const list = el("ul", {id: "overrides-list"});
    for (const im of Object.keys(OV.images).sort()) {
      const e = OV.images[im];
      for (const [lab, r] of Object.entries(e.regions || {}))
        list.append(el("li", {}, `${im} region ${lab}: ${r.action}` + (r.action === "pick" ? ` ${r.phase} [${r.zone_axis.join(" ")}]` : "") + " ",
          el("button", {text: "undo", onclick: () => setAction(im, lab, null)})));
      (e.merge || []).forEach((p, i) => list.append(el("li", {}, `${im}: merge regions ${p[0]} + ${p[1]} `,
        el("button", {text: "undo", onclick: () => removeMerge(im, i)}))));
    }
    if (!list.children.length) list.append(el("li", {class: "hint", text: "no corrections yet"}));
    card.append(list,
      el("p", {}, "Save the file as ", el("code", {id: "overrides-path", text: (data.sample_dir || "<dataset>/" + data.sample) + "/overrides.yaml"}),
        " and rerun the workflow (", el("code", {text: "snakemake --cores N"}), ")."),
      el("button", {id: "download-overrides", text: "Download overrides.yaml", onclick: download}),
      el("pre", {id: "overrides-yaml", text: overridesYaml()}));
    box.append(card);
  }
  // ---------------------------------------------------------------- helpers
  function regionCall(r) {
    const c = r.call || {};
    const s = r.summary || {};
    const phase = c.phase !== undefined ? c.phase : s.phase || "";
    const zone = c.zone_axis || s.zone_axis || [];
    const ambiguous = !!(c.ambiguous || s.ambiguous || (s.state === "ambiguous"));
    const identified = !!(c.identified !== undefined ? c.identified : s.identified);
    return {phase, zone, ambiguous, identified, override: c.override || s.override || "",
            amorphous: !!(s.amorphous || c.override === "amorphous"), reason: c.reason || s.reason || ""};
  }
  function regionTitle(r) {
    const c = regionCall(r);
    if (c.amorphous) return "amorphous";
    if (c.phase) return `${c.phase} [${c.zone.join(" ")}]`;
    return r.crystalline === false ? "not crystalline" : "not identified";
  }
  function centroid(r) {
    const s = r.summary || {};
    if (s.centroid_nm) return s.centroid_nm;
    const c = r.contour || [[0, 0]];
    return [c.reduce((a, p) => a + p[0], 0) / c.length, c.reduce((a, p) => a + p[1], 0) / c.length];
  }
  function imageTrace(img, x0, y0, dx, dy) {
    return {type: "image", source: img.src, x0: x0, y0: y0, dx: dx, dy: dy, hoverinfo: "skip", name: "image"};
  }
  function outlineTraces(im, highlight) {
    const traces = [];
    for (const r of Object.values(im.regions)) {
      if (!r.contour || !r.contour.length) continue;
      const xs = r.contour.map((p) => p[0]), ys = r.contour.map((p) => p[1]);
      xs.push(xs[0]); ys.push(ys[0]);
      const col = phaseColour(regionCall(r).phase);
      const on = highlight === undefined || highlight === r.label;
      traces.push({type: "scatter", mode: "lines", x: xs, y: ys, fill: "toself", fillcolor: col + (on ? "22" : "08"),
        line: {color: col, width: highlight === r.label ? 3 : 1.5}, hoveron: "fills", hoverinfo: "text",
        text: `region ${r.label}: ${regionTitle(r)}`, name: `region ${r.label}`, customdata: [r.label],
        meta: r.label, showlegend: false});
    }
    return traces;
  }
  function labelTrace(im) {
    const regs = Object.values(im.regions).filter((r) => r.contour || (r.summary || {}).centroid_nm);
    return {type: "scatter", mode: "markers+text", x: regs.map((r) => centroid(r)[0]), y: regs.map((r) => centroid(r)[1]),
      text: regs.map((r) => `${r.label}: ${regionTitle(r)}`), customdata: regs.map((r) => r.label),
      textfont: {color: "#fff", size: 12}, marker: {size: 10, color: regs.map((r) => phaseColour(regionCall(r).phase)),
      line: {color: "#fff", width: 1}}, textposition: "top center", hoverinfo: "text", showlegend: false, name: "labels"};
  }
  function imageLayout(title) {
    return {title: {text: title, font: {size: 13}}, margin: {l: 50, r: 10, t: 30, b: 40}, dragmode: "zoom",
      xaxis: {title: "x (nm)", constrain: "domain"}, yaxis: {title: "y (nm)", scaleanchor: "x", autorange: "reversed"}};
  }
  // ---------------------------------------------------------------- images
  function placementTraces(im) {
    const st = data.stack;
    if (!st || !st.images || st.overview !== im.name) return [];
    const out = [];
    for (const [name, rec] of Object.entries(st.images)) {
      const other = imagesByName[name];
      if (name === im.name || !rec.transform || !other) continue;
      const T = rec.transform, H = other.shape[0], W = other.shape[1];
      const pts = [[0, 0], [W, 0], [W, H], [0, H], [0, 0]].map(([c, r]) =>
        [(T[0][0] * c + T[0][1] * r + T[0][2]) * im.pixel_size_nm[0], (T[1][0] * c + T[1][1] * r + T[1][2]) * im.pixel_size_nm[1]]);
      out.push({type: "scatter", mode: "lines+text", x: pts.map((p) => p[0]), y: pts.map((p) => p[1]),
        line: {color: rec.accepted ? "#ffd600" : "#ff5252", dash: "dash", width: 2}, hoverinfo: "text",
        text: [`${name} (${rec.accepted ? "placed" : "not accepted"}, confidence ${fmt(rec.confidence, 3)})`, "", "", "", ""],
        textposition: "bottom right", textfont: {color: "#ffd600"}, showlegend: false, name: "placement " + name});
    }
    return out;
  }
  function renderImage(im) {
    const sec = document.getElementById("images");
    const card = el("div", {class: "card", id: "image-" + im.name});
    const W = im.shape[1] * im.pixel_size_nm[0], H = im.shape[0] * im.pixel_size_nm[1];
    card.append(el("h2", {}, `Image ${im.name}`, el("span", {class: "hint", text:
      ` ${im.shape[1]}×${im.shape[0]} px, pixel ${fmt(im.pixel_size_nm[0], 4)}×${fmt(im.pixel_size_nm[1], 4)} nm, ${im.mode || ""}`})));
    const btns = el("div", {class: "regbtns"}, "Regions: ");
    for (const r of Object.values(im.regions).sort((a, b) => a.label - b.label))
      btns.append(el("button", {"data-region": im.name + "/" + r.label, style: "border-left: 4px solid " + phaseColour(regionCall(r).phase),
        text: `${r.label} · ${regionTitle(r)}`, onclick: () => showRegion(im.name, r.label)}));
    card.append(btns);
    const plot = el("div", {class: "plot", id: "plot-" + im.name});
    card.append(plot);
    const info = {};
    if (im.calibration_scale_factor !== undefined && im.calibration_scale_factor !== null) info["calibration scale factor (phase_id)"] = im.calibration_scale_factor;
    for (const [k, v] of Object.entries(flatten(im.info))) if (!/regions/.test(k)) info[k] = v;
    if (im.segmentation) for (const [k, v] of Object.entries(im.segmentation)) info["segmentation " + k] = v;
    const scan = Object.values(im.regions).map((r) => r.call && r.call.scan_distortion).find((x) => x);
    if (scan) info["scan distortion estimate D (x' = D x)"] = scan;
    card.append(el("details", {}, el("summary", {text: "calibration, scan distortion and image summary"}), kvTable(info)));
    if (im.gpa) card.append(renderGpaInfo(im));
    if (im.figures && im.figures.length) card.append(el("details", {}, el("summary", {text: `figures (${im.figures.length})`}), figures(im.figures)));
    if (im.notes && im.notes.length) card.append(el("p", {class: "notes", text: im.notes.join("; ")}));
    sec.append(card);
    if (!hasPlotly) return;
    const ds = im.display;
    const dx = W / ds.shape[1], dy = H / ds.shape[0];
    const traces = [imageTrace(ds, dx / 2, dy / 2, dx, dy), ...outlineTraces(im), labelTrace(im), ...placementTraces(im)];
    Plotly.newPlot(plot, traces, imageLayout(`${data.sample}/${im.name}`), plotCfg).then(() => {
      plot.on("plotly_click", (ev) => {
        const p = ev.points && ev.points[0];
        if (!p) return;
        const lab = Array.isArray(p.data.customdata) && p.data.customdata.length === 1 && p.pointNumber === undefined
          ? p.data.customdata[0] : (p.customdata !== undefined ? p.customdata : p.data.meta);
        if (lab !== undefined && im.regions[lab]) showRegion(im.name, String(lab));
      });
    });
  }
  function renderGpaInfo(im) {
    const g = im.gpa;
    if (!g.applicable) return el("p", {class: "hint", text: "GPA not applicable: " + (g.reason || "")});
    return el("p", {class: "hint", text: `GPA: reference region ${g.reference_label}; maps ${g.maps.map((m) => m.name).join(", ")}` +
      (g.sigma.length ? `; σ maps ${g.sigma.map((m) => m.name).join(", ")}` : "; no σ maps in gpa.h5")});
  }
  function figures(list) {
    return el("div", {class: "figs"}, list.map((f) => el("figure", {}, el("img", {src: f.src, alt: f.stage + "/" + f.name, loading: "lazy"}),
      el("figcaption", {text: `${f.stage} · ${f.name}`}))));
  }
  // ---------------------------------------------------------------- region panel
  function candidateTable(im, r) {
    const cand = r.candidates;
    if (!cand || !cand.rows.length) return el("p", {class: "hint", text: "no ranked candidates (no lattice found in the FFT)"});
    const cols = cand.columns, ix = Object.fromEntries(cols.map((c, i) => [c, i]));
    const first = ["rank", "phase"].filter((c) => cols.includes(c));
    const shown = first.concat(cols.filter((c) => !first.includes(c) && !["zone_u", "zone_v", "zone_w", "space_group"].includes(c)));
    const head = el("tr", {}, shown.map((c) => el("th", {text: c === "scale_factor" ? "scale factor (implied calibration)" : c.replace(/_/g, " ")})));
    head.insertBefore(el("th", {text: "zone axis"}), head.children[Math.min(2, head.children.length)]);
    head.append(el("th", {text: ""}));
    const t = el("table", {class: "candidates", id: "candidates"}, head);
    const call = regionCall(r);
    const ov = ((OV.images[im.name] || {}).regions || {})[r.label];
    let seen = false;
    for (const row of cand.rows) {
      const zone = [row[ix.zone_u], row[ix.zone_v], row[ix.zone_w]];
      const cur = !seen && row[ix.phase] === call.phase && zone.join() === call.zone.join();
      seen = seen || cur;
      const picked = ov && ov.action === "pick" && ov.phase === row[ix.phase] && ov.zone_axis.join() === zone.join();
      const tr = el("tr", {class: picked ? "picked" : cur ? "current" : null, "data-phase": row[ix.phase], "data-zone": zone.join(" ")},
        shown.map((c) => el("td", {text: fmt(row[ix[c]])})));
      tr.insertBefore(el("td", {text: `[${zone.join(" ")}]`}), tr.children[Math.min(2, tr.children.length)]);
      tr.append(el("td", {}, el("button", {class: "pick", text: picked ? "picked" : "pick",
        onclick: () => setAction(im.name, r.label, {action: "pick", phase: row[ix.phase], zone_axis: zone})})));
      t.append(tr);
    }
    return t;
  }
  function fftPlot(div, r) {
    const f = r.fft;
    const traces = [];
    if (f) {
      const [x0, x1, y0, y1] = f.extent, n = f.shape;
      const dx = (x1 - x0) / n[1], dy = (y1 - y0) / n[0];
      traces.push(imageTrace(f, x0 + dx / 2, y0 + dy / 2, dx, dy));
    }
    if (r.peaks) traces.push({type: "scatter", mode: "markers", x: r.peaks.kx, y: r.peaks.ky, name: "detected peaks",
      marker: {symbol: "circle-open", size: 9, color: "#00e5ff"}, hoverinfo: "x+y"});
    if (r.spots && r.spots.kx.length) traces.push({type: "scatter", mode: "markers+text", x: r.spots.kx, y: r.spots.ky,
      text: r.spots.hkl, textposition: "top center", textfont: {color: "#ffeb3b", size: 10}, name: "indexed (h k l)",
      marker: {symbol: "x", size: 7, color: "#ffeb3b"}});
    Plotly.newPlot(div, traces, {margin: {l: 45, r: 5, t: 20, b: 35}, showlegend: true, legend: {orientation: "h", y: -0.15},
      xaxis: {title: "kx (nm⁻¹)", constrain: "domain"}, yaxis: {title: "ky (nm⁻¹)", scaleanchor: "x", autorange: "reversed"}}, plotCfg);
  }
  function mapPlot(div, im, m, label) {
    const W = im.shape[1] * im.pixel_size_nm[0], H = im.shape[0] * im.pixel_size_nm[1];
    const dx = W / m.shape[1], dy = H / m.shape[0];
    const r = im.regions[label];
    const traces = [imageTrace(m, dx / 2, dy / 2, dx, dy)];
    if (r && r.contour) traces.push({type: "scatter", mode: "lines", x: [...r.contour.map((p) => p[0]), r.contour[0][0]],
      y: [...r.contour.map((p) => p[1]), r.contour[0][1]], line: {color: "#000", width: 1.5}, hoverinfo: "skip", showlegend: false});
    Plotly.newPlot(div, traces, {margin: {l: 35, r: 5, t: 22, b: 25}, title: {text: `${m.name} (${m.units})`, font: {size: 12}},
      xaxis: {constrain: "domain"}, yaxis: {scaleanchor: "x", autorange: "reversed"}}, plotCfg);
  }
  function colourScale(m) {
    const grad = {RdBu_r: "linear-gradient(90deg,#053061,#f7f7f7,#67001f)", magma: "linear-gradient(90deg,#000004,#b73779,#fcfdbf)",
      viridis: "linear-gradient(90deg,#440154,#21918c,#fde725)", gray: "linear-gradient(90deg,#000,#fff)"}[m.cmap] || "linear-gradient(90deg,#000,#fff)";
    return el("div", {}, el("div", {class: "colorbar", style: "background:" + grad}),
      el("div", {class: "scale"}, el("span", {text: fmt(m.vmin, 3)}), el("span", {text: fmt(m.vmax, 3)})));
  }
  function mapsBlock(im, list, label) {
    const box = el("div", {class: "maps"});
    const divs = list.map((m) => { const d = el("div", {class: "plot"}); box.append(el("div", {}, d, colourScale(m))); return [d, m]; });
    return [box, () => { if (hasPlotly) for (const [d, m] of divs) mapPlot(d, im, m, label); }];
  }
  function showRegion(imName, label) {
    const im = imagesByName[imName], r = im && im.regions[label];
    const panel = document.getElementById("region-panel");
    panel.replaceChildren();
    if (!r) return;
    location.hash = encodeURIComponent(imName) + "/" + label;
    const call = regionCall(r);
    const badges = [];
    if (call.amorphous) badges.push(el("span", {class: "badge no", text: "amorphous"}));
    else if (call.identified) badges.push(el("span", {class: "badge ok", text: "identified"}));
    else badges.push(el("span", {class: "badge no", text: "not identified"}));
    if (call.ambiguous) badges.push(el("span", {class: "badge amb", id: "ambiguous", text: "ambiguous"}));
    if (call.override) badges.push(el("span", {class: "badge ovr", text: "corrected by hand: " + call.override}));
    const card = el("div", {class: "card", id: "region-card", "data-image": imName, "data-label": label});
    card.append(el("h2", {}, `${imName} · region ${label}: `, el("span", {id: "region-phase", text: regionTitle(r)}), ...badges));
    if (call.reason) card.append(el("p", {class: "hint", text: call.reason}));
    const s = r.summary || {};
    if (s.candidates_state || s.ambiguous_between) card.append(kvTable({state: s.candidates_state, between: s.ambiguous_between}));
    // actions
    const others = Object.keys(im.regions).filter((k) => k !== label).sort((a, b) => a - b);
    const sel = el("select", {id: "merge-with"}, others.map((k) => el("option", {value: k, text: `region ${k}`})));
    card.append(el("div", {class: "actions"},
      el("button", {id: "mark-amorphous", text: "mark amorphous", onclick: () => setAction(imName, label, {action: "amorphous"})}), " ",
      el("button", {id: "mark-excluded", text: "exclude region", onclick: () => setAction(imName, label, {action: "exclude"})}), " ",
      "merge with ", sel, el("button", {id: "merge", text: "merge", onclick: () => addMerge(imName, label, sel.value)})));
    card.append(el("h3", {text: "Ranked candidates"}), candidateTable(im, r));
    let detail = null;
    if (r.detail) {
      detail = el("div", {class: "plot fft", id: "detail-plot"});
      card.append(el("h3", {text: `Full resolution (${r.detail.shape[1]}×${r.detail.shape[0]} px around the region)`}), detail);
    }
    const fft = el("div", {class: "plot fft", id: "fft-plot"});
    card.append(el("h3", {text: "FFT: detected peaks and indexed spots"}), fft);
    // strain
    card.append(el("h3", {text: "Strain (GPA)"}));
    const strainStats = {};
    for (const [k, v] of Object.entries(flatten(s))) if (/(^|\.)(e(xx|yy|xy)|rotation|strain|sigma|σ)/i.test(k) && !/rotation_deg$/.test(k)) strainStats[k] = v;
    if (Object.keys(strainStats).length) card.append(kvTable(strainStats));
    const after = [];
    if (im.gpa && im.gpa.applicable && im.gpa.maps.length) {
      const [box, draw] = mapsBlock(im, im.gpa.maps.concat(im.gpa.sigma || []), label);
      card.append(box); after.push(draw);
      if (!(im.gpa.sigma || []).length) card.append(el("p", {class: "hint", text: "σ maps: not in gpa.h5"}));
    } else card.append(el("p", {class: "hint", text: im.gpa ? "GPA not applicable: " + (im.gpa.reason || "") : "no gpa.h5"}));
    if (data.stack && data.stack.images && data.stack.images[imName]) {
      const p = data.stack.images[imName];
      card.append(el("h3", {text: "Placement in the overview"}), kvTable({overview: data.stack.overview, parent: p.parent, offset_nm: p.offset_nm,
        scale: p.scale, rotation_deg: p.rotation_deg, confidence: p.confidence, accepted: p.accepted}));
      if (data.stack.overview !== imName) card.append(el("p", {class: "hint", text: p.accepted
        ? "the region's outline is drawn in green on the overview image"
        : "placement not accepted by register_stack: the region is not drawn on the overview"}));
    }
    if (im.simulation && im.simulation.maps.length) {
      card.append(el("h3", {text: "Simulated image and residual"}));
      const [box, draw] = mapsBlock(im, im.simulation.maps, label);
      card.append(box); after.push(draw);
    }
    card.append(el("details", {}, el("summary", {text: "all region fields (summary.json)"}), kvTable(flatten(s))));
    panel.append(card);
    if (hasPlotly && detail) {
      const [ox, oy] = r.detail.origin_nm, [px, py] = im.pixel_size_nm;
      const tr = [imageTrace(r.detail, ox + px / 2, oy + py / 2, px, py)];
      if (r.contour) tr.push({type: "scatter", mode: "lines", x: [...r.contour.map((p) => p[0]), r.contour[0][0]],
        y: [...r.contour.map((p) => p[1]), r.contour[0][1]], line: {color: phaseColour(call.phase), width: 2}, hoverinfo: "skip", showlegend: false});
      Plotly.newPlot(detail, tr, {margin: {l: 45, r: 5, t: 10, b: 35}, xaxis: {title: "x (nm)", constrain: "domain",
        range: [ox, ox + r.detail.shape[1] * px]}, yaxis: {title: "y (nm)", scaleanchor: "x", range: [oy + r.detail.shape[0] * py, oy]}}, plotCfg);
    }
    if (hasPlotly) { fftPlot(fft, r); after.forEach((f) => f()); showInOverview(imName, r); }
    if (hasPlotly) {
      const plot = document.getElementById("plot-" + imName);
      if (plot && plot.data) {
        const n = Object.values(im.regions).filter((x) => x.contour && x.contour.length).length;
        const idx = [...Array(n).keys()].map((i) => i + 1);
        const widths = idx.map((i) => (plot.data[i].meta === label ? 3.5 : 1.5));
        Plotly.restyle(plot, {"line.width": widths}, idx);
      }
    }
  }
  function showInOverview(imName, r) {
    // the selected region's outline mapped into the overview through stack.h5's affine transform
    const st = data.stack;
    if (!hasPlotly || !st || !st.images || st.overview === imName || !st.images[imName] || !st.images[imName].accepted) return;
    const ov = imagesByName[st.overview], plot = document.getElementById("plot-" + st.overview);
    const T = st.images[imName].transform, im = imagesByName[imName];
    if (!ov || !plot || !plot.data || !T || !r.contour) return;
    const pts = r.contour.concat([r.contour[0]]).map(([x, y]) => {
      const c = x / im.pixel_size_nm[0], rr = y / im.pixel_size_nm[1];
      return [(T[0][0] * c + T[0][1] * rr + T[0][2]) * ov.pixel_size_nm[0], (T[1][0] * c + T[1][1] * rr + T[1][2]) * ov.pixel_size_nm[1]];
    });
    const idx = plot.data.findIndex((d) => d.name === "selected region");
    if (idx >= 0) Plotly.deleteTraces(plot, idx);
    Plotly.addTraces(plot, {type: "scatter", mode: "lines", name: "selected region", x: pts.map((p) => p[0]), y: pts.map((p) => p[1]),
      line: {color: "#00e676", width: 3}, hoverinfo: "text", text: `${imName} region ${r.label}`, showlegend: false});
  }
  // ---------------------------------------------------------------- sample-level content
  function renderSampleExtra() {
    const sec = document.getElementById("sample-extra");
    if (data.model) {
      const card = el("div", {class: "card"}, el("h2", {text: `Atomic model: projection along the beam (${data.model.n_atoms} atoms)`}));
      const d = el("div", {class: "plot small", id: "model-plot"});
      card.append(d, colourScale(data.model));
      sec.append(card);
      if (hasPlotly) {
        const [x0, x1, y0, y1] = data.model.extent, n = data.model.shape;
        const dx = (x1 - x0) / n[1], dy = (y1 - y0) / n[0];
        Plotly.newPlot(d, [imageTrace(data.model, x0 + dx / 2, y0 + dy / 2, dx, dy)], {margin: {l: 45, r: 5, t: 10, b: 35},
          xaxis: {title: "x (nm)", constrain: "domain"}, yaxis: {title: "y (nm)", scaleanchor: "x", autorange: "reversed"}}, plotCfg);
      }
    }
    if (data.figures && data.figures.length)
      sec.append(el("div", {class: "card"}, el("h2", {text: "Stage figures: stack, twin, Keating forces, phonon and electronic LDOS"}), figures(data.figures)));
    const rest = Object.fromEntries(Object.entries(data.summary || {}).filter(([k]) => !["sample", "images"].includes(k)));
    if (Object.keys(rest).length)
      sec.append(el("div", {class: "card"}, el("details", {}, el("summary", {text: "sample summary (summary.json)"}), kvTable(flatten(rest)))));
    if (data.notes && data.notes.length) sec.append(el("p", {class: "notes", text: data.notes.join("; ")}));
  }
  // ---------------------------------------------------------------- start
  data.images.forEach(renderImage);
  renderSampleExtra();
  renderOverrides();
  const h = decodeURIComponent(location.hash.slice(1)).split("/");
  if (h.length === 2 && imagesByName[h[0]] && imagesByName[h[0]].regions[h[1]]) showRegion(h[0], h[1]);
  window.temtwinViewer = {showRegion, overridesYaml, OV};
})();
