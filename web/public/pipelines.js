'use strict';
// Fluo's live pipeline view (docs/operations.md, "Pipeline view"): polls the operations
// listener's /admin/pipelines once a second and draws each pipeline as a graph, sources on
// the left. Served by Fluo at /admin/view/ (and by the demo web app, which forwards
// /admin/pipelines to Fluo when given --ops-uri). No build step, no external files.
//
// The token: from the URL's fragment (#token=..., never sent to a server), else asked for;
// kept in sessionStorage; sent as Authorization: Bearer.
//
// Layout: layers by longest path from the sources (cycles broken in creation order), each
// layer a column; a pipeline is laid out again only when its elements or connections change,
// so that states and bitrates update in place.

(function () {
  const SVG = 'http://www.w3.org/2000/svg';
  const POLL_MS = 1000;
  const BOX_W = 190;
  const BOX_H = 78;
  const COL_GAP = 100;
  const ROW_GAP = 40;
  const PAD = 24;
  // Room above a box for the loops of an element connected to itself, per media type.
  const LOOP = { VIDEO: 0, AUDIO: 1, DATA: 2 };
  const KINDS = ['AUDIO', 'VIDEO'];

  const api = new URL(location.pathname.includes('/admin/view/') ? '../pipelines' : 'admin/pipelines', location.href);
  const $ = (id) => document.getElementById(id);
  const drawn = new Map(); // pipeline id -> {section, svg, signature, boxes: Map, edges: Map}
  let selected = null; // element id whose panel is open
  let panelTimer = null;

  // ---------------------------------------------------------------------------------------
  // Token

  function takeTokenFromFragment() {
    const m = /(?:^|[#&])(?:access_)?token=([^&]*)/.exec(location.hash);
    if (m) {
      sessionStorage.setItem('fluo-view-token', decodeURIComponent(m[1]));
      history.replaceState(null, '', location.pathname + location.search);
    }
  }

  function token() {
    return sessionStorage.getItem('fluo-view-token') || '';
  }

  function showLogin(why) {
    $('login').hidden = false;
    $('login-error').textContent = why || '';
  }

  $('login').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sessionStorage.setItem('fluo-view-token', $('token').value);
    $('login').hidden = true;
    poll();
    if (selected) refreshPanel();
  });

  async function getJson(url) {
    const headers = token() ? { Authorization: `Bearer ${token()}` } : {};
    const r = await fetch(url, { headers, cache: 'no-store' });
    if (r.status === 401 || r.status === 403) {
      const text = await r.text();
      const err = new Error(text || `HTTP ${r.status}`);
      err.auth = true;
      throw err;
    }
    if (r.status === 404) return null;
    if (!r.ok) throw new Error(`HTTP ${r.status}: ${await r.text()}`);
    return r.json();
  }

  // ---------------------------------------------------------------------------------------
  // Formatting

  function el(name, attrs, text) {
    const e = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function bps(v) {
    if (v === null || v === undefined) return '-';
    if (v >= 1e6) return `${(v / 1e6).toFixed(2)} Mb/s`;
    if (v >= 1e3) return `${Math.round(v / 1e3)} kb/s`;
    return `${v} b/s`;
  }

  function sum(side) {
    return side ? KINDS.reduce((a, k) => a + (side[k] || 0), 0) : null;
  }

  function shortText(s, n) {
    return s.length > n ? `${s.slice(0, n - 1)}…` : s;
  }

  // ---------------------------------------------------------------------------------------
  // Layout

  function signature(p) {
    const nodes = p.elements.map((e) => e.id).join(',');
    const edges = p.connections.map((c) => `${c.source}>${c.sink}:${c.mediaType}`).sort().join(',');
    return `${nodes}|${edges}`;
  }

  // Column and row of every element: longest path from the sources over the connections
  // (and hub -> port), back edges (found by a depth-first walk in creation order) left out.
  function layout(p) {
    const ids = p.elements.map((e) => e.id);
    const order = new Map(ids.map((id, i) => [id, i]));
    const out = new Map(ids.map((id) => [id, new Set()]));
    const link = (a, b) => {
      if (a !== b && out.has(a) && out.has(b)) out.get(a).add(b);
    };
    for (const c of p.connections) link(c.source, c.sink);
    for (const e of p.elements) if (e.hub) link(e.hub, e.id);
    const hasIn = new Set();
    for (const [, s] of out) for (const b of s) hasIn.add(b);
    // Back edges: a depth-first walk from the sources first, then from the others.
    const state = new Map();
    const back = new Set();
    const starts = ids.filter((id) => !hasIn.has(id)).concat(ids.filter((id) => hasIn.has(id)));
    for (const s of starts) {
      if (state.has(s)) continue;
      const stack = [[s, [...out.get(s)].sort((a, b) => order.get(a) - order.get(b)), 0]];
      state.set(s, 1);
      while (stack.length) {
        const top = stack[stack.length - 1];
        const [node, next] = top;
        if (top[2] === next.length) {
          state.set(node, 2);
          stack.pop();
          continue;
        }
        const n = next[top[2]++];
        if (state.get(n) === 1) back.add(`${node}>${n}`);
        else if (!state.has(n)) {
          state.set(n, 1);
          stack.push([n, [...out.get(n)].sort((a, b) => order.get(a) - order.get(b)), 0]);
        }
      }
    }
    // Longest path, in a topological order of what is left.
    const col = new Map(ids.map((id) => [id, 0]));
    const indeg = new Map(ids.map((id) => [id, 0]));
    for (const [a, s] of out) for (const b of s) if (!back.has(`${a}>${b}`)) indeg.set(b, indeg.get(b) + 1);
    const queue = ids.filter((id) => indeg.get(id) === 0);
    while (queue.length) {
      const a = queue.shift();
      for (const b of out.get(a)) {
        if (back.has(`${a}>${b}`)) continue;
        col.set(b, Math.max(col.get(b), col.get(a) + 1));
        indeg.set(b, indeg.get(b) - 1);
        if (indeg.get(b) === 0) queue.push(b);
      }
    }
    // Rows: creation order within a column, then one pass placing each element near the
    // mean row of what feeds it (ties: creation order).
    const columns = [];
    for (const id of ids) (columns[col.get(id)] = columns[col.get(id)] || []).push(id);
    const row = new Map();
    columns.forEach((c) => c.forEach((id, i) => row.set(id, i)));
    const preds = new Map(ids.map((id) => [id, []]));
    for (const [a, s] of out) for (const b of s) if (!back.has(`${a}>${b}`)) preds.get(b).push(a);
    for (let i = 1; i < columns.length; i++) {
      const c = columns[i] || [];
      const key = (id) => {
        const ps = preds.get(id).filter((x) => col.get(x) < i);
        return ps.length ? ps.reduce((a, x) => a + row.get(x), 0) / ps.length : row.get(id);
      };
      c.sort((a, b) => key(a) - key(b) || order.get(a) - order.get(b));
      c.forEach((id, r) => row.set(id, r));
    }
    const pos = new Map();
    for (const id of ids) {
      pos.set(id, { x: PAD + 50 + col.get(id) * (BOX_W + COL_GAP), y: PAD + 18 + row.get(id) * (BOX_H + ROW_GAP) });
    }
    const width = PAD * 2 + 50 + Math.max(1, columns.length) * (BOX_W + COL_GAP) - COL_GAP;
    const rows = Math.max(1, ...columns.map((c) => (c ? c.length : 0)));
    const height = PAD + 18 + rows * (BOX_H + ROW_GAP) + 10;
    return { pos, width, height };
  }

  // ---------------------------------------------------------------------------------------
  // Drawing

  function edgePath(a, b, offset, self, media) {
    const y1 = a.y + BOX_H / 2 + offset;
    const y2 = b.y + BOX_H / 2 + offset;
    if (self) {
      // A loopback: out of the right side, over the box, into the left side; one lane per
      // media type.
      const lane = LOOP[media] || 0;
      const top = a.y - 10 - lane * 8;
      const r = a.x + BOX_W + 14 + lane * 8;
      const l = a.x - 14 - lane * 8;
      return `M${a.x + BOX_W} ${y1} C${r} ${y1} ${r} ${top} ${a.x + BOX_W - 20} ${top} ` +
        `L${a.x + 20} ${top} C${l} ${top} ${l} ${y2} ${a.x} ${y2}`;
    }
    if (b.x > a.x) {
      const x1 = a.x + BOX_W;
      const x2 = b.x;
      const mid = (x1 + x2) / 2;
      return `M${x1} ${y1} C${mid} ${y1} ${mid} ${y2} ${x2} ${y2}`;
    }
    // Backwards (or within a column): under the boxes.
    const low = Math.max(a.y, b.y) + BOX_H + 16 + Math.abs(offset);
    return `M${a.x + BOX_W / 2 + offset} ${a.y + BOX_H} C${a.x + BOX_W / 2} ${low} ${b.x + BOX_W / 2} ${low} ${b.x + BOX_W / 2 + offset} ${b.y + BOX_H}`;
  }

  function markers(svg) {
    const defs = el('defs');
    for (const [name, color] of [['VIDEO', '#1565c0'], ['AUDIO', '#2e7d32'], ['DATA', '#757575'], ['transcode', '#ef6c00']]) {
      const m = el('marker', { id: `arrow-${name}`, viewBox: '0 0 10 10', refX: '9', refY: '5', markerWidth: '7', markerHeight: '7', orient: 'auto-start-reverse' });
      m.appendChild(el('path', { d: 'M0 0 L10 5 L0 10 z', fill: color }));
      defs.appendChild(m);
    }
    svg.appendChild(defs);
  }

  function build(p, d) {
    const { pos, width, height } = layout(p);
    const svg = d.svg;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    svg.setAttribute('width', width);
    svg.setAttribute('height', height);
    markers(svg);
    const edgeLayer = el('g', { class: 'edges' });
    const boxLayer = el('g', { class: 'boxes' });
    svg.appendChild(edgeLayer);
    svg.appendChild(boxLayer);
    d.boxes = new Map();
    d.edges = new Map();
    // Hub -> port links: thin grey.
    for (const e of p.elements) {
      if (!e.hub || !pos.has(e.hub)) continue;
      const a = pos.get(e.hub);
      const b = pos.get(e.id);
      edgeLayer.appendChild(el('path', { class: 'hub-link', d: edgePath(a, b, 0, false), fill: 'none', stroke: '#b0bec5', 'stroke-dasharray': '1 4', 'stroke-width': '2' }));
    }
    const offsets = { AUDIO: -9, VIDEO: 0, DATA: 9 };
    for (const c of p.connections) {
      const a = pos.get(c.source);
      const b = pos.get(c.sink);
      if (!a || !b) continue;
      const path = el('path', {
        class: `edge media-${c.mediaType}`,
        d: edgePath(a, b, offsets[c.mediaType] || 0, c.source === c.sink, c.mediaType),
        'data-source': c.source,
        'data-sink': c.sink,
        'data-media': c.mediaType,
      });
      const label = el('g', { class: 'codec-label' });
      edgeLayer.appendChild(path);
      edgeLayer.appendChild(label);
      d.edges.set(`${c.source}>${c.sink}:${c.mediaType}:${c.sinkDescription}`, { path, label });
    }
    for (const e of p.elements) {
      const { x, y } = pos.get(e.id);
      const g = el('g', { class: 'element', transform: `translate(${x} ${y})`, 'data-id': e.id, 'data-type': e.type });
      g.appendChild(el('rect', { class: 'box', width: BOX_W, height: BOX_H, rx: 5 }));
      g.appendChild(el('text', { class: 'type', x: 8, y: 15 }, e.type));
      const label = e.name && e.name !== e.id ? `${e.shortId} ${shortText(e.name, 20)}` : e.shortId;
      g.appendChild(el('text', { class: 'id', x: 8, y: 29 }, label));
      const worker = el('text', { class: 'worker', x: BOX_W - 6, y: 14, 'text-anchor': 'end' });
      g.appendChild(worker);
      const flow = el('g', { class: 'flow', transform: 'translate(8 43)' });
      const dots = {};
      let fx = 0;
      for (const dir of ['in', 'out']) {
        flow.appendChild(el('text', { x: fx, y: 0 }, dir));
        fx += dir === 'in' ? 14 : 22;
        for (const k of KINDS) {
          flow.appendChild(el('text', { x: fx, y: 0 }, k[0]));
          const dot = el('circle', { class: 'flow-dot', cx: fx + 11, cy: -4, r: 4, 'data-dir': dir, 'data-media': k });
          flow.appendChild(dot);
          dots[`${dir}-${k}`] = dot;
          fx += 22;
        }
        fx += 6;
      }
      g.appendChild(flow);
      const rate = el('text', { class: 'bitrate', x: 8, y: 58 });
      g.appendChild(rate);
      const tc = el('text', { class: 'transcoder', x: 8, y: 72 });
      g.appendChild(tc);
      g.addEventListener('click', () => openPanel(e.id));
      boxLayer.appendChild(g);
      d.boxes.set(e.id, { g, worker, dots, rate, tc });
    }
  }

  // States, bitrates and modes: in place.
  function update(p, d) {
    for (const e of p.elements) {
      const b = d.boxes.get(e.id);
      if (!b) continue;
      b.worker.textContent = e.worker === null || e.worker === undefined ? '' : `worker ${e.worker}`;
      for (const dir of ['in', 'out']) {
        for (const k of KINDS) {
          const st = e.flow[dir][k];
          const dot = b.dots[`${dir}-${k}`];
          dot.setAttribute('class', `flow-dot ${st}`);
          dot.setAttribute('data-state', st);
        }
      }
      const br = e.bitrate;
      const rin = br ? sum(br.in) : null;
      const rout = br ? sum(br.out) : null;
      b.rate.textContent = br ? `in ${bps(rin)}  out ${bps(rout)}` : 'bitrate -';
      b.rate.setAttribute('data-in', rin === null ? '' : String(rin));
      b.rate.setAttribute('data-out', rout === null ? '' : String(rout));
      const pairs = (e.transcoders || []).map((t) => `${t.from}→${t.to}`);
      b.tc.textContent = pairs.length ? `transcodes ${pairs.join(', ')}` : '';
      const transcoding = pairs.length > 0 || KINDS.some((k) => e.transcoding[k]);
      b.g.setAttribute('class', `element${transcoding ? ' transcoding' : ''}${selected === e.id ? ' selected' : ''}`);
      b.g.setAttribute('data-flow-in', KINDS.filter((k) => e.flow.in[k] === 'FLOWING').join(','));
      b.g.setAttribute('data-flow-out', KINDS.filter((k) => e.flow.out[k] === 'FLOWING').join(','));
    }
    for (const c of p.connections) {
      const ed = d.edges.get(`${c.source}>${c.sink}:${c.mediaType}:${c.sinkDescription}`);
      if (!ed) continue;
      ed.path.setAttribute('class', `edge media-${c.mediaType} mode-${c.mode}`);
      ed.path.setAttribute('data-mode', c.mode);
      const marker = c.mode === 'transcode' ? 'transcode' : c.mediaType;
      ed.path.setAttribute('marker-end', `url(#arrow-${marker})`);
      while (ed.label.firstChild) ed.label.removeChild(ed.label.firstChild);
      if (c.mode === 'transcode') {
        const len = ed.path.getTotalLength();
        const mid = ed.path.getPointAtLength(len / 2);
        const text = `${c.from} → ${c.to}`;
        const w = text.length * 7 + 10;
        ed.label.appendChild(el('rect', { class: 'codec-pair-bg', x: mid.x - w / 2, y: mid.y - 9, width: w, height: 17, rx: 8 }));
        ed.label.appendChild(el('text', { class: 'codec-pair', x: mid.x, y: mid.y + 4, 'text-anchor': 'middle', 'data-from': c.from, 'data-to': c.to }, text));
      }
      const title = el('title', {}, `${c.mediaType} ${c.mode}${c.codec ? ` ${c.codec}` : ''}${c.mode === 'transcode' ? ` ${c.from} -> ${c.to}` : ''}`);
      while (ed.path.firstChild) ed.path.removeChild(ed.path.firstChild);
      ed.path.appendChild(title);
    }
  }

  function render(view) {
    const seen = new Set();
    const host = $('pipelines');
    for (const p of view.pipelines) {
      seen.add(p.id);
      let d = drawn.get(p.id);
      if (!d) {
        const section = document.createElement('section');
        section.className = 'pipeline';
        section.dataset.id = p.id;
        const h = document.createElement('h2');
        const svg = el('svg', { class: 'graph' });
        section.appendChild(h);
        section.appendChild(svg);
        host.appendChild(section);
        d = { section, h, svg, signature: null };
        drawn.set(p.id, d);
      }
      d.h.textContent = '';
      d.h.appendChild(document.createTextNode(`MediaPipeline ${p.shortId}${p.name && p.name !== p.id ? ` ${shortText(p.name, 40)}` : ''} `));
      const sub = document.createElement('span');
      sub.className = 'muted';
      sub.textContent = `${p.elementCount} element(s)${p.truncated ? `, ${p.elements.length} shown` : ''}`;
      d.h.appendChild(sub);
      const sig = signature(p);
      if (sig !== d.signature) {
        build(p, d);
        d.signature = sig;
      }
      update(p, d);
    }
    for (const [id, d] of drawn) {
      if (!seen.has(id)) {
        d.section.remove();
        drawn.delete(id);
      }
    }
    $('empty').hidden = view.pipelines.length > 0;
    const t = $('truncated');
    t.hidden = !view.truncated;
    t.textContent = view.truncated
      ? `showing ${view.pipelines.length} of ${view.pipelineCount} pipelines (at most ${view.limits.pipelines} pipelines, ${view.limits.elements} elements, ${view.limits.connections} connections)`
      : '';
    const time = new Date(view.time).toLocaleTimeString();
    $('status').className = '';
    $('status').textContent = `${view.pipelineCount} pipeline(s), ${view.elementCount} element(s), ${time}${view.mediaThread ? '' : ' (media thread busy: no bitrates)'}`;
    if (selected && !view.pipelines.some((p) => p.elements.some((e) => e.id === selected))) {
      $('panel-sub').textContent = 'released';
    }
  }

  // ---------------------------------------------------------------------------------------
  // The element's panel

  function row(table, key, value) {
    const tr = document.createElement('tr');
    const k = document.createElement('td');
    const v = document.createElement('td');
    k.textContent = key;
    v.textContent = typeof value === 'string' ? value : JSON.stringify(value);
    tr.appendChild(k);
    tr.appendChild(v);
    table.appendChild(tr);
  }

  async function refreshPanel() {
    clearTimeout(panelTimer);
    const id = selected;
    if (!id) return;
    let d;
    try {
      d = await getJson(new URL(`${api.pathname}/${id}`, api));
    } catch (e) {
      // Another element's panel was opened meanwhile: it asks for itself.
      if (id !== selected) return;
      $('panel-sub').textContent = e.message;
      if (e.auth) {
        // No more asking with a token that is refused: the form asks for another.
        stopPolling();
        showLogin(e.message);
        return;
      }
      panelTimer = setTimeout(refreshPanel, 2000);
      return;
    }
    if (id !== selected) return;
    if (!d) {
      $('panel-sub').textContent = 'released';
      return;
    }
    $('panel-title').textContent = `${d.type} ${d.shortId}`;
    $('panel-sub').textContent = d.id;
    const props = $('panel-props');
    props.textContent = '';
    row(props, 'worker', d.worker === null ? 'in the server' : `media worker ${d.worker}`);
    for (const dir of ['in', 'out']) row(props, `flow ${dir}`, KINDS.map((k) => `${k} ${d.flow[dir][k]}`).join(', '));
    for (const [k, v] of Object.entries(d.properties).sort(([a], [b]) => a.localeCompare(b))) row(props, k, v);
    const stats = $('panel-stats');
    stats.textContent = '';
    const entries = Object.entries(d.stats || {});
    if (!entries.length) stats.textContent = 'nothing measured (latencies need the pipeline\'s latencyStats)';
    for (const [name, s] of entries) {
      const div = document.createElement('div');
      div.className = 'stat';
      const title = document.createElement('div');
      title.className = 'stat-title';
      title.textContent = `${s.type || ''} ${name}`;
      div.appendChild(title);
      const table = document.createElement('table');
      for (const [k, v] of Object.entries(s)) if (!['__module__', '__type__', 'id', 'type'].includes(k)) row(table, k, v);
      div.appendChild(table);
      stats.appendChild(div);
    }
    if (polling) panelTimer = setTimeout(refreshPanel, 2000);
  }

  function openPanel(id) {
    selected = id;
    // Below the header, whose legend stays in sight.
    $('panel').style.top = `${document.querySelector('header').getBoundingClientRect().bottom}px`;
    $('panel').hidden = false;
    $('main').classList.add('with-panel');
    $('panel-title').textContent = id;
    $('panel-sub').textContent = 'loading...';
    $('panel-props').textContent = '';
    $('panel-stats').textContent = '';
    for (const d of drawn.values()) {
      for (const [bid, b] of d.boxes || []) b.g.classList.toggle('selected', bid === id);
    }
    refreshPanel();
  }

  $('panel-close').addEventListener('click', () => {
    selected = null;
    clearTimeout(panelTimer);
    $('panel').hidden = true;
    $('main').classList.remove('with-panel');
    for (const d of drawn.values()) for (const b of (d.boxes || new Map()).values()) b.g.classList.remove('selected');
  });

  // ---------------------------------------------------------------------------------------
  // Polling

  let timer = null;
  let polling = false; // false after a refused token, until the form gives another
  async function poll() {
    clearTimeout(timer);
    polling = true;
    try {
      const view = await getJson(api);
      if (view && polling) render(view);
    } catch (e) {
      $('status').className = 'error';
      $('status').textContent = e.message;
      if (e.auth) {
        stopPolling();
        showLogin(e.message);
        return;
      }
    }
    if (polling) timer = setTimeout(poll, POLL_MS);
  }

  // The view's and the panel's asking both stop (a refused token).
  function stopPolling() {
    polling = false;
    clearTimeout(timer);
    clearTimeout(panelTimer);
  }

  takeTokenFromFragment();
  if (!token() && location.pathname.includes('/admin/view/')) showLogin('');
  else poll();
})();
