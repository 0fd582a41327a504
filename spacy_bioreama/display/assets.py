"""The inline CSS and JavaScript of the relation view (no network, no external files).

The script positions what the HTML already holds: every relation is a `g.bio-rel` in an
SVG overlay of its text pane; on load (and on resize) the script reads the bounding
boxes of the head and tail mentions' tokens and draws an arc from head to tail (arrow at
the tail), its label placed at the first free spot along the arc so labels never pile
up. Hovering a mention highlights every mention of its concept and the concept's arcs;
hovering a table row highlights its arc and the two mentions."""

CSS = """
body.bio-page { font-family: -apple-system, BlinkMacSystemFont, 'Segoe UI', Helvetica, Arial,
  sans-serif; margin: 0; padding: 12px 16px; color: #222; background: #fff; }
.bio-header h1 { font-size: 18px; margin: 0 0 6px 0; }
.bio-legend { font-size: 11px; margin: 0 0 8px 0; display: flex; flex-wrap: wrap; gap: 4px 10px; }
.bio-legend span.sw { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
  margin-right: 3px; vertical-align: -1px; }
.bio-doc { border-top: 1px solid #ddd; padding-top: 6px; margin-bottom: 18px; }
.bio-doc h2 { font-size: 14px; margin: 0 0 4px 0; font-weight: 600; }
.bio-doc h2 small { font-weight: normal; color: #666; }
.bio-view { display: grid; grid-template-columns: minmax(0, 1.7fr) minmax(0, 1fr); gap: 14px;
  align-items: start; }
.bio-view.bio-compare { grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); }
.bio-view.bio-compare .bio-table-wrap { grid-column: 1 / span 2; max-height: none; }
.bio-pane h3 { font-size: 12px; margin: 0 0 2px 0; color: #555; text-transform: uppercase;
  letter-spacing: 0.05em; }
.bio-text { position: relative; font-size: 13.5px; padding-top: 52px; }
.bio-text .spans { line-height: 2.35 !important; }
.bio-text svg.bio-arcs { position: absolute; left: 0; top: 0; pointer-events: none;
  overflow: visible; z-index: 5; }
.bio-tok { display: inline-block; position: relative; line-height: 1.3; padding: 0 1px;
  border-radius: 2px; cursor: default; vertical-align: top; }
.bio-bar { position: absolute; height: 3px; left: 0; width: 100%; }
.bio-bar-start { border-top-left-radius: 2px; border-bottom-left-radius: 2px; }
mark.bio-ent { position: absolute; left: 0; top: 3px; font-size: 8.5px; line-height: 1;
  padding: 0 2px; border-radius: 2px; color: #333; white-space: nowrap; font-weight: 600;
  opacity: 0.9; z-index: 3; }
.bio-tok.bio-hl { outline: 2px solid #222; }
mark.bio-ent.bio-hl { outline: 1px solid #222; opacity: 1; z-index: 9; }
mark.bio-ent.miss { outline: 1.5px dashed #c0392b; }
mark.bio-ent.false-positive { outline: 1.5px dashed #e67e22; }
.bio-tok.miss { box-shadow: inset 0 0 0 1.5px #c0392b; }
.bio-tok.false-positive { box-shadow: inset 0 0 0 1.5px #e67e22; }
g.bio-rel path.bio-arc { fill: none; stroke: var(--c); stroke-width: 1.3; opacity: 0.55; }
g.bio-rel path.bio-arrow { fill: var(--c); opacity: 0.75; }
g.bio-rel.miss path.bio-arc { stroke-dasharray: 4 3; }
g.bio-rel.false-positive path.bio-arc { stroke-dasharray: 2 2; }
g.bio-rel rect { fill: #fff; stroke: var(--c); stroke-width: 0.8; opacity: 0.92; }
g.bio-rel.miss rect { stroke: #c0392b; stroke-dasharray: 2 1; }
g.bio-rel.false-positive rect { stroke: #e67e22; stroke-dasharray: 2 1; }
g.bio-rel text { font-size: 9px; fill: var(--c); font-weight: 600; }
g.bio-rel.unanchored { display: none; }
.bio-focus g.bio-rel { opacity: 0.12; }
.bio-focus g.bio-rel.bio-hl { opacity: 1; }
g.bio-rel.bio-hl path.bio-arc { stroke-width: 2.4; opacity: 1; }
.bio-table-wrap { max-height: 720px; overflow: auto; }
table.bio-rels { border-collapse: collapse; font-size: 11px; width: 100%; }
table.bio-rels th, table.bio-rels td { border-bottom: 1px solid #eee; padding: 2px 4px;
  text-align: left; vertical-align: top; }
table.bio-rels th { background: #f6f6f6; position: sticky; top: 0; }
table.bio-rels td.ids { color: #777; font-size: 9.5px; word-break: break-all; }
table.bio-rels td.lab { font-weight: 600; white-space: nowrap; }
table.bio-rels tr.bio-hl td { background: #fff6c8; }
tr.bio-rel-row.match td.st { color: #2e8b57; }
tr.bio-rel-row.miss td.st { color: #c0392b; }
tr.bio-rel-row.false-positive td.st { color: #e67e22; }
"""

JS = r"""
(function () {
  "use strict";
  var SVGNS = "http://www.w3.org/2000/svg";
  function esc(s) { return (window.CSS && CSS.escape) ? CSS.escape(s) : s; }
  function tokensOf(root, id) {
    return root.querySelectorAll('.bio-tok[data-mentions~="' + esc(id) + '"]');
  }
  function anchor(text, base, id) {
    var toks = tokensOf(text, id);
    if (!toks.length) return null;
    var r0 = toks[0].getBoundingClientRect(), left = r0.left, right = r0.right;
    for (var i = 1; i < toks.length; i++) {
      var r = toks[i].getBoundingClientRect();
      if (Math.abs(r.top - r0.top) < 2) {
        left = Math.min(left, r.left); right = Math.max(right, r.right);
      }
    }
    return { x: (left + right) / 2 - base.left, y: r0.top - base.top };
  }
  function bez(p0, p1, p2, p3, t) {
    var u = 1 - t;
    return u * u * u * p0 + 3 * u * u * t * p1 + 3 * u * t * t * p2 + t * t * t * p3;
  }
  function hits(a, list) {
    for (var i = 0; i < list.length; i++) {
      var b = list[i];
      if (a.x < b.x + b.w + 2 && b.x < a.x + a.w + 2 &&
          a.y < b.y + b.h + 1 && b.y < a.y + a.h + 1) return true;
    }
    return false;
  }
  function layoutPane(pane) {
    var text = pane.querySelector(".bio-text"), svg = pane.querySelector("svg.bio-arcs");
    if (!text || !svg) return;
    var base = text.getBoundingClientRect();
    svg.setAttribute("width", Math.ceil(base.width));
    svg.setAttribute("height", Math.ceil(base.height));
    var rels = Array.prototype.slice.call(svg.querySelectorAll("g.bio-rel")), items = [];
    rels.forEach(function (g) {
      var a = anchor(text, base, g.getAttribute("data-head"));
      var b = anchor(text, base, g.getAttribute("data-tail"));
      if (!a || !b) { g.classList.add("unanchored"); return; }
      g.classList.remove("unanchored");
      items.push({ g: g, a: a, b: b, d: Math.hypot(b.x - a.x, b.y - a.y) });
    });
    items.sort(function (p, q) { return p.d - q.d; });
    var placed = [], toks = [];
    text.querySelectorAll(".bio-tok").forEach(function (t) {
      var r = t.getBoundingClientRect();
      toks.push({ x: r.left - base.left, y: r.top - base.top, w: r.width,
                  h: Math.min(r.height, 17) });
    });
    items.forEach(function (it) {
      var a = it.a, b = it.b, h = Math.min(14 + it.d * 0.1, 56);
      var cy1 = a.y - h, cy2 = b.y - h;
      it.g.querySelector("path.bio-arc").setAttribute("d",
        "M" + a.x + "," + a.y + " C" + a.x + "," + cy1 + " " + b.x + "," + cy2 +
        " " + b.x + "," + b.y);
      it.g.querySelector("path.bio-arrow").setAttribute("d",
        "M" + (b.x - 3.5) + "," + (b.y - 6) + " L" + (b.x + 3.5) + "," + (b.y - 6) +
        " L" + b.x + "," + b.y + " Z");
      var label = it.g.querySelector("text"), rect = it.g.querySelector("rect");
      var w = label.getComputedTextLength() + 6, lh = 11, best = null;
      var ts = [0.5, 0.4, 0.6, 0.3, 0.7, 0.2, 0.8], dys = [0, -12, 12, -24, 24, -36];
      for (var pass = 0; pass < 2 && !best; pass++) {
        for (var j = 0; j < dys.length && !best; j++) {
          for (var k = 0; k < ts.length && !best; k++) {
            var x = bez(a.x, a.x, b.x, b.x, ts[k]), y = bez(a.y, cy1, cy2, b.y, ts[k]) + dys[j];
            var box = { x: x - w / 2, y: y - lh / 2, w: w, h: lh };
            if (!hits(box, placed) && (pass || !hits(box, toks))) best = box;
          }
        }
      }
      if (!best) {
        var x0 = bez(a.x, a.x, b.x, b.x, 0.5), y0 = bez(a.y, cy1, cy2, b.y, 0.5);
        best = { x: x0 - w / 2, y: y0 - lh / 2, w: w, h: lh };
      }
      placed.push(best);
      rect.setAttribute("x", best.x); rect.setAttribute("y", best.y);
      rect.setAttribute("width", best.w); rect.setAttribute("height", best.h);
      rect.setAttribute("rx", 3);
      label.setAttribute("x", best.x + 3); label.setAttribute("y", best.y + lh - 2.5);
    });
  }
  function layoutAll() {
    document.querySelectorAll(".bio-pane").forEach(layoutPane);
    document.body.setAttribute("data-bio-ready", "1");
  }
  function clear(root) {
    root.classList.remove("bio-focus");
    root.querySelectorAll(".bio-hl").forEach(function (el) { el.classList.remove("bio-hl"); });
  }
  function hoverMention(ev) {
    var tok = ev.currentTarget, view = tok.closest(".bio-doc");
    var ids = (tok.getAttribute("data-concepts") || "").split(" ").filter(Boolean);
    if (!ids.length) return;
    view.classList.add("bio-focus");
    ids.forEach(function (c) {
      view.querySelectorAll('.bio-tok[data-concepts~="' + esc(c) + '"], ' +
                            'mark.bio-ent[data-ids~="' + esc(c) + '"]')
        .forEach(function (el) { el.classList.add("bio-hl"); });
      view.querySelectorAll('g.bio-rel[data-head-concept="' + esc(c) + '"], ' +
                            'g.bio-rel[data-tail-concept="' + esc(c) + '"]')
        .forEach(function (el) { el.classList.add("bio-hl"); });
    });
  }
  function hoverRow(ev) {
    var row = ev.currentTarget, view = row.closest(".bio-doc");
    view.classList.add("bio-focus");
    row.classList.add("bio-hl");
    var sel = 'g.bio-rel[data-rel="' + esc(row.getAttribute("data-rel")) + '"]';
    view.querySelectorAll(sel).forEach(function (g) {
      g.classList.add("bio-hl");
      [g.getAttribute("data-head"), g.getAttribute("data-tail")].forEach(function (m) {
        tokensOf(view, m).forEach(function (el) { el.classList.add("bio-hl"); });
      });
    });
  }
  function init() {
    document.querySelectorAll(".bio-tok").forEach(function (el) {
      el.addEventListener("mouseenter", hoverMention);
      el.addEventListener("mouseleave", function () { clear(el.closest(".bio-doc")); });
    });
    document.querySelectorAll("tr.bio-rel-row").forEach(function (el) {
      el.addEventListener("mouseenter", hoverRow);
      el.addEventListener("mouseleave", function () { clear(el.closest(".bio-doc")); });
    });
    layoutAll();
    var timer = null;
    window.addEventListener("resize", function () {
      clearTimeout(timer); timer = setTimeout(layoutAll, 60);
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
"""
