// Traces (`/traces`, `/traces/{trace_id}?span={span_id}`): a search box
// over the window's traces (tracelist.js), and
// a trace as a waterfall of plain DOM rows — a tree by parent, dates on the
// ruler, open spans drawn to now — with the selected span's details.

import { get } from './api.js';
import { h, fill, empty, externalLink, navLink, problem } from './dom.js';
import { count, duration, isFailure, kindName, millis, relative, time, utc } from './format.js';
import { filterQuery, isoSeconds, meta } from './filters.js';
import { traceList } from './tracelist.js';
import { idleBands, ruler, timeline } from './timeline.js';

const TRACE_ID = /^[0-9a-f]{32}$/i;

// The last trace drawn (and its pull requests' lead-time stages), so
// selecting a span redraws without a new request.
let cached = { id: null, trace: null, stages: null };
// Subtrees folded by the viewer, by span id (kept while the page lives).
const collapsed = new Set();
// The viewer's choices for the waterfall, kept while the page lives: idle
// stretches compressed, the zoomed part of a trace (`{ id, from, to }`,
// chosen on the minimap), the find-in-trace text.
const view = { compress: true, zoom: null, find: '' };

function searchForm(q, navigate, filters) {
  const input = h('input', { type: 'search', name: 'q', value: q || '', placeholder: 'span key, vstrace-… reference, commit sha or trace id', 'aria-label': 'Find a trace' });
  return h('form', {
    class: 'search',
    role: 'search',
    onsubmit: (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (text) navigate(`/traces${filterQuery(filters, { q: text })}`);
    },
  }, input, h('button', { type: 'submit' }, 'Find'));
}

/** Finds the trace of `q`: a trace id as it is, anything else through `?ref=`. */
async function find(q, navigate, filters) {
  const text = q.trim();
  if (TRACE_ID.test(text)) {
    navigate(`/traces/${text.toLowerCase()}${filterQuery(filters)}`, { replace: true });
    return null;
  }
  const trace = await get('/api/v1/traces', { ref: text });
  const lower = text.toLowerCase();
  const span = trace.spans.find((s) => s.key.toLowerCase() === lower)
    || trace.spans.find((s) => (s.trace_refs || []).some((r) => r.toLowerCase() === lower))
    || trace.spans.find((s) => Object.values(s.attributes || {}).some((v) => typeof v === 'string' && v.toLowerCase().startsWith(lower) && lower.length >= 7));
  cached = { id: trace.trace_id, trace, stages: null };
  navigate(`/traces/${trace.trace_id}${filterQuery(filters, { span: span ? span.span_id : null })}`, { replace: true });
  return null;
}

export async function render({ path, params, filters, navigate, window }) {
  const id = path.startsWith('/traces/') ? decodeURIComponent(path.slice('/traces/'.length)) : '';
  const q = params.get('q');
  if (!id) {
    const page = h('div', { class: 'page traces' }, h('h1', null, 'Traces'), searchForm(q, navigate, filters));
    if (q) {
      try {
        await find(q, navigate, filters);
        return null;
      } catch (error) {
        if (error.status !== 404) {
          page.append(problem(error));
          return page;
        }
        // Not a key, reference, sha or trace id: text in span names and keys.
        page.append(h('p', { class: 'note' }, `No span answers to “${q}” as a key, a trace reference or a sha; below, the traces with it in a span's name or key.`));
      }
    } else {
      page.append(h('p', { class: 'note' },
        'Type what names a piece of work: a span key (github:octo-org/hello-world:issue:27), a trace reference (vstrace-github-hello-world-27), a commit sha, a trace id, or any text of a span name. Every span on the other pages also links to its trace.'));
    }
    if (!window.valid) {
      page.append(empty('Pick a time range whose start is before its end.'));
      return page;
    }
    const list = await traceList({ filters, window, params, navigate, text: q });
    page.append(list);
    page.mount = () => list.mount && list.mount();
    return page;
  }
  let trace = cached.id === id ? cached.trace : null;
  if (!trace) {
    trace = await get(`/api/v1/traces/${encodeURIComponent(id)}`);
    cached = { id, trace, stages: null };
  }
  if (!cached.stages) cached.stages = await stagesOf(trace);
  const seen = await meta();
  const selectedId = params.get('span');
  return h('div', { class: 'page traces' },
    searchForm('', navigate, filters),
    waterfall(trace, cached.stages, selectedId, navigate, filters, seen.trace_url));
}

/**
 * The lead-time stages of the trace's pull requests that reached production,
 * by span key: `{ coding, pickup, review, deploy }`, each `[from, to]` in ms
 * or null, from `/api/v1/dora/items?key=changes` (the drawer's rows; the page
 * only places them on the time axis).
 */
async function stagesOf(trace) {
  const prs = trace.spans.filter((s) => s.kind === 'pull_request' && s.end);
  const stages = new Map();
  if (!prs.length) return stages;
  const keys = new Set(prs.map((s) => s.key));
  const repos = [...new Set(prs.map((s) => s.repo).filter(Boolean))];
  const since = Math.floor(Math.min(...prs.map((s) => millis(s.start))) / 1000) * 1000;
  let answer;
  try {
    answer = await get('/api/v1/dora/items', { key: 'changes', since: isoSeconds(since), until: isoSeconds(Date.now() + 60000), repo: repos.join(',') || null });
  } catch (_) {
    return stages;
  }
  const back = (ms, seconds) => (ms == null || seconds == null ? null : ms - seconds * 1000);
  for (const item of answer.items) {
    if (!keys.has(item.span_key) || stages.has(item.span_key)) continue;
    const deployed = millis(item.time);
    const merged = back(deployed, item.deploy_seconds);
    const reviewed = back(merged, item.review_seconds);
    const opened = back(reviewed, item.pickup_seconds);
    const first = back(opened, item.coding_seconds);
    const pair = (a, b) => (a == null || b == null ? null : [a, b]);
    stages.set(item.span_key, {
      coding: pair(first, opened), pickup: pair(opened, reviewed), review: pair(reviewed, merged), deploy: pair(merged, deployed),
      seconds: { coding: item.coding_seconds, pickup: item.pickup_seconds, review: item.review_seconds, deploy: item.deploy_seconds },
      deploy_key: item.deploy_key,
    });
  }
  return stages;
}

/** Spans in tree order (parents before children, siblings by start), with depth. */
function treeOf(spans) {
  const byId = new Map(spans.map((s) => [s.span_id, s]));
  const children = new Map();
  const roots = [];
  for (const span of spans) {
    const parent = span.parent_span_id && byId.has(span.parent_span_id) && span.parent_span_id !== span.span_id ? span.parent_span_id : null;
    if (parent) {
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(span);
    } else {
      roots.push(span);
    }
  }
  const byStart = (a, b) => millis(a.start) - millis(b.start) || a.key.localeCompare(b.key);
  const rows = [];
  const seen = new Set();
  const walk = (span, depth, hidden) => {
    if (seen.has(span.span_id)) return;
    seen.add(span.span_id);
    const kids = (children.get(span.span_id) || []).sort(byStart);
    rows.push({ span, depth, hidden, kids: kids.length });
    for (const kid of kids) walk(kid, depth + 1, hidden || collapsed.has(span.span_id));
  };
  roots.sort(byStart).forEach((r) => walk(r, 0, false));
  return { rows, children, byId };
}

const STAGES = ['coding', 'pickup', 'review', 'deploy'];
const STAGE_WHAT = {
  coding: 'first commit → pull request opened',
  pickup: 'opened → first review',
  review: 'first review → merge',
  deploy: 'merge → production deploy end',
};

/** Whether a span matches the find-in-trace text (name, key, kind, source, attribute values). */
function matches(span, text) {
  const hay = [span.name, span.key, span.kind, span.source, span.outcome || '', ...Object.values(span.attributes || {}).map(String)];
  return hay.some((v) => String(v).toLowerCase().includes(text));
}

function waterfall(trace, stages, selectedId, navigate, filters, backend) {
  const spans = trace.spans;
  const now = Date.now();
  const { rows, children, byId } = treeOf(spans);
  const first = Math.min(...spans.map((s) => millis(s.start)));
  const anyOpen = spans.some((s) => !s.end);
  const last = Math.max(...spans.map((s) => (s.end ? millis(s.end) : now)), anyOpen ? now : 0, first + 1000);
  const zoomed = view.zoom && view.zoom.id === trace.trace_id ? view.zoom : null;
  const [t0, t1] = zoomed ? [zoomed.from, zoomed.to] : [first, last];
  // What happened when: spans starting and ending, first reviews.
  const events = spans.flatMap((s) => [millis(s.start), s.end ? millis(s.end) : now, millis((s.attributes || {})['valuestream.first_review_at'])])
    .filter((t) => t != null && !Number.isNaN(t));
  const axis = timeline(events, t0, t1, view.compress);
  const clamp = (v) => Math.max(0, Math.min(100, v));
  const selected = selectedId ? byId.get(selectedId) : null;
  const root = rows.length ? rows[0].span : spans[0];
  const sources = [...new Set(spans.map((s) => s.source))].sort();
  const errors = spans.filter((s) => isFailure(s.outcome)).length;
  const open = spans.filter((s) => !s.end).length;
  const waiting = trace.waiting || [];
  const select = (span) => navigate(`/traces/${trace.trace_id}${filterQuery(filters, { span: span.span_id })}`);
  const redraw = (focusId) => {
    const fresh = waterfall(trace, stages, selectedId, navigate, filters, backend);
    const host = tree.closest('.page');
    if (host) host.replaceChild(fresh, host.lastChild);
    const again = focusId && host && host.querySelector(`[data-span-id="${focusId}"]`);
    if (again) again.focus();
  };

  const csv = `/api/v1/spans${filterQuery({}, { trace_id: trace.trace_id, limit: 1000, format: 'csv' })}`;
  const header = h('header', { class: 'trace-head' },
    h('h1', null, root.name),
    h('p', { class: 'facts' },
      h('span', null, 'trace ', h('code', { class: 'trace-id' }, trace.trace_id), ' ', copyButton(trace.trace_id, 'copy trace id')),
      h('span', null, 'started ', time(root.start)),
      h('span', null, anyOpen ? `open for ${duration((now - first) / 1000)} so far` : `lasted ${duration((last - first) / 1000)}`),
      h('span', null, `${spans.length} spans`),
      h('span', null, `sources: ${sources.join(', ')}`),
      errors ? h('span', { class: 'bad' }, `${errors} failed`) : null,
      open ? h('span', null, `${open} open`) : null,
      waiting.length ? h('span', {
        class: 'badge waiting', dataset: { waiting: String(waiting.length) },
        title: waiting.map((w) => `${w.span_key} waits for ${w.ref}`).join('\n'),
      }, `${count(waiting.length, 'reference')} waiting`) : null,
      h('span', null, 'download ',
        h('a', { href: `/api/v1/traces/${trace.trace_id}`, target: '_blank', rel: 'noopener' }, 'JSON'), ' · ',
        h('a', { href: csv, download: `trace-${trace.trace_id}.csv` }, 'CSV')),
      // Trace ids are deterministic, so the backend has this one under the same id.
      backend ? h('a', { class: 'backend', href: backend.replaceAll('{trace_id}', trace.trace_id), target: '_blank', rel: 'noopener noreferrer' }, 'open in your trace backend ↗') : null));

  const find = h('input', {
    type: 'search', class: 'find', value: view.find, placeholder: 'find in this trace', 'aria-label': 'Find in this trace',
    oninput: () => { view.find = find.value; filterRows(); },
  });
  const found = h('span', { class: 'found', role: 'status' });
  const compress = h('label', { class: 'toggle-idle', title: 'Draw stretches in which nothing happened (no span started or ended, no review came) narrow, labelled with how long they lasted' },
    h('input', { type: 'checkbox', checked: view.compress, onchange: (e) => { view.compress = e.target.checked; redraw(); } }), ' compress idle time');
  const unzoom = zoomed ? h('button', { type: 'button', onclick: () => { view.zoom = null; redraw(); } }, 'show the whole trace') : null;
  const tools = h('div', { class: 'trace-tools' }, find, found, compress, unzoom);

  const tree = h('div', { class: 'waterfall', role: 'tree', 'aria-label': `spans of ${root.name}` });
  tree.append(minimap(spans, first, last, now, zoomed, (from, to) => {
    view.zoom = { id: trace.trace_id, from, to };
    redraw();
  }));
  tree.append(ruler(axis));
  for (const row of rows) {
    if (row.hidden) continue;
    const { span, depth, kids } = row;
    const start = millis(span.start);
    const end = span.end ? millis(span.end) : now;
    const failed = isFailure(span.outcome);
    const isSelected = selected && selected.span_id === span.span_id;
    const isCollapsed = collapsed.has(span.span_id);
    const toggle = kids
      ? h('button', {
        type: 'button', class: 'toggle', tabindex: -1, 'aria-label': isCollapsed ? 'expand' : 'collapse',
        onclick: (e) => { e.stopPropagation(); flip(span.span_id); },
      }, isCollapsed ? '▸' : '▾')
      : h('span', { class: 'toggle none', 'aria-hidden': 'true' }, '·');
    const links = span.links || [];
    const left = clamp(axis.x(start));
    const right = clamp(axis.x(end));
    const inView = end >= t0 && start <= t1;
    const stage = stages.get(span.key);
    const el = h('div', {
      class: `row span ${failed ? 'failed' : ''} ${span.end ? '' : 'open'}`,
      role: 'treeitem',
      tabindex: isSelected || (!selected && row === rows[0]) ? 0 : -1,
      'aria-level': depth + 1,
      'aria-selected': String(!!isSelected),
      'aria-expanded': kids ? String(!isCollapsed) : null,
      dataset: { spanId: span.span_id, key: span.key, kind: span.kind, state: span.state },
      onclick: () => select(span),
    },
    h('div', { class: 'label', style: { paddingLeft: `${depth * 1.1 + 0.3}rem` } },
      toggle,
      h('span', { class: `source source-${span.source}` }, span.source),
      h('span', { class: 'kind' }, kindName(span.kind)),
      h('span', { class: 'name', title: span.key }, span.name),
      span.outcome ? h('span', { class: `outcome ${failed ? 'bad' : ''}` }, span.outcome) : null,
      span.end ? null : h('span', { class: 'outcome open' }, 'open'),
      span.state === 'expired' ? h('span', { class: 'outcome open', title: 'no end arrived within --expire-open-after' }, 'expired') : null,
      links.length ? h('span', { class: 'links-marker', dataset: { links: String(links.length) }, title: `linked to ${links.join(', ')} (see the details)` }, `↗ ${links.length}`) : null),
    h('div', { class: 'lane' },
      idleBands(axis),
      inView ? h('div', {
        class: `bar kind-${span.kind} ${failed ? 'failed' : ''} ${span.end ? '' : 'open'}`,
        style: { left: `${left}%`, width: `${Math.max(right - left, 0.4)}%` },
        title: `${utc(start)} → ${span.end ? utc(end) : 'now (open)'}`,
      }) : null,
      stage ? stageStrip(stage, axis, clamp) : null,
      h('span', { class: 'dur', style: left > 70 ? { right: `${100 - left + 0.5}%` } : { left: `${Math.min(right, 99) + 0.5}%` } },
        span.end ? duration(span.duration_seconds) : `${duration((now - start) / 1000)} so far`)));
    tree.append(el);
  }
  tree.addEventListener('keydown', (event) => keyboard(event, tree, byId, select));

  const detail = selected ? details(selected, trace, children, byId, select, filters, stages)
    : h('aside', { class: 'detail', 'aria-label': 'span details' }, empty('Select a span (click, or Enter on a row) to see its details.'));
  const layout = h('div', { class: 'trace-layout' }, h('div', { class: 'scroll' }, tools, tree), detail);
  filterRows();
  if (selected) {
    // Bring the selected row into view once it is in the document.
    requestAnimationFrame(() => {
      const row = tree.querySelector('[aria-selected="true"]');
      if (row && document.activeElement === document.body) row.focus({ preventScroll: false });
    });
  }
  return h('div', null, header, layout);

  function flip(id) {
    if (collapsed.has(id)) collapsed.delete(id); else collapsed.add(id);
    redraw(id);
  }

  // Find in trace: the rows that match, and the rows above them (their
  // place in the tree); the others are hidden until the box is cleared.
  function filterRows() {
    const text = view.find.trim().toLowerCase();
    const hits = new Set(text ? spans.filter((s) => matches(s, text)).map((s) => s.span_id) : []);
    const keep = new Set();
    for (const id of hits) {
      for (let at = byId.get(id), guard = 0; at && !keep.has(at.span_id) && guard < spans.length; at = byId.get(at.parent_span_id), guard += 1) keep.add(at.span_id);
    }
    for (const el of tree.querySelectorAll('[role="treeitem"]')) {
      el.hidden = !!text && !keep.has(el.dataset.spanId);
      el.classList.toggle('match', hits.has(el.dataset.spanId));
    }
    found.textContent = text ? `${count(hits.size, 'span matches', 'spans match')}` : '';
    found.dataset.matches = String(hits.size);
  }
}

/** A pull request's lead-time stages, drawn in its lane under the bar. */
function stageStrip(stage, axis, clamp) {
  const parts = STAGES.filter((name) => stage[name]).map((name) => {
    const [from, to] = stage[name];
    const left = clamp(axis.x(from));
    const width = Math.max(clamp(axis.x(to)) - left, 0.3);
    return h('div', {
      class: `stage-part stage-${name}`,
      dataset: { leadStage: name },
      style: { left: `${left}%`, width: `${width}%` },
      title: `${name} ${duration(stage.seconds[name])}: ${STAGE_WHAT[name]}`,
    });
  });
  return h('div', { class: 'lead-stages', 'aria-label': 'lead-time stages' }, parts);
}

/**
 * The whole trace in small, above the ruler: drag across it to zoom the
 * waterfall to that stretch (the zoomed part is framed).
 */
function minimap(spans, first, last, now, zoomed, zoom) {
  const total = Math.max(last - first, 1);
  const pct = (t) => ((t - first) / total) * 100;
  const lines = spans.slice(0, 200).map((s, i, all) => {
    const start = millis(s.start);
    const end = s.end ? millis(s.end) : now;
    return h('div', {
      class: `mini-bar kind-${s.kind} ${isFailure(s.outcome) ? 'failed' : ''}`,
      style: { left: `${pct(start)}%`, width: `${Math.max(pct(end) - pct(start), 0.3)}%`, top: `${(i / Math.max(all.length, 1)) * 100}%` },
    });
  });
  const frame = zoomed ? h('div', { class: 'mini-frame', style: { left: `${pct(zoomed.from)}%`, width: `${pct(zoomed.to) - pct(zoomed.from)}%` } }) : null;
  const brush = h('div', { class: 'mini-brush', hidden: true });
  const strip = h('div', { class: 'mini-strip', title: 'Drag across to zoom to a stretch of the trace' }, lines, frame, brush);
  let from = null;
  const at = (event) => {
    const box = strip.getBoundingClientRect();
    return Math.max(0, Math.min(1, (event.clientX - box.left) / Math.max(box.width, 1)));
  };
  strip.addEventListener('pointerdown', (event) => {
    from = at(event);
    strip.setPointerCapture(event.pointerId);
    brush.hidden = false;
    Object.assign(brush.style, { left: `${from * 100}%`, width: '0%' });
  });
  strip.addEventListener('pointermove', (event) => {
    if (from == null) return;
    const to = at(event);
    Object.assign(brush.style, { left: `${Math.min(from, to) * 100}%`, width: `${Math.abs(to - from) * 100}%` });
  });
  strip.addEventListener('pointerup', (event) => {
    if (from == null) return;
    const to = at(event);
    const [a, b] = [Math.min(from, to), Math.max(from, to)];
    from = null;
    brush.hidden = true;
    // A click, not a drag: nothing to zoom to.
    if (b - a < 0.01) return;
    zoom(first + a * total, first + b * total);
  });
  return h('div', { class: 'row minimap', 'aria-hidden': 'true' },
    h('div', { class: 'label' }, h('span', { class: 'muted' }, zoomed ? 'zoomed: drag to zoom again' : 'drag to zoom')),
    h('div', { class: 'lane' }, strip));
}

function keyboard(event, tree, byId, select) {
  const rows = [...tree.querySelectorAll('[role="treeitem"]')].filter((r) => !r.hidden);
  const index = rows.indexOf(document.activeElement);
  if (index < 0) return;
  const row = rows[index];
  const move = (to) => {
    const target = rows[Math.max(0, Math.min(rows.length - 1, to))];
    rows.forEach((r) => r.setAttribute('tabindex', '-1'));
    target.setAttribute('tabindex', '0');
    target.focus();
  };
  switch (event.key) {
    case 'ArrowDown': move(index + 1); break;
    case 'ArrowUp': move(index - 1); break;
    case 'Home': move(0); break;
    case 'End': move(rows.length - 1); break;
    case 'ArrowLeft':
    case 'ArrowRight': {
      const expanded = row.getAttribute('aria-expanded');
      if (expanded === (event.key === 'ArrowLeft' ? 'true' : 'false')) row.querySelector('.toggle').click();
      break;
    }
    case 'Enter':
    case ' ': select(byId.get(row.dataset.spanId)); break;
    default: return;
  }
  event.preventDefault();
}

function copyButton(text, label) {
  return h('button', {
    type: 'button', class: 'copy', 'aria-label': label, title: label,
    onclick: async (e) => {
      e.stopPropagation();
      try { await navigator.clipboard.writeText(text); e.target.textContent = 'copied'; } catch (_) { e.target.textContent = 'select and copy'; }
    },
  }, 'copy');
}

/** A span key as a link: inside this trace it selects the span, else it opens the span's trace. */
function spanLink(key, trace, select, filters) {
  const here = trace.spans.find((s) => s.key === key);
  if (here) return h('button', { type: 'button', class: 'linkish', title: key, onclick: () => select(here) }, here.name);
  return navLink(`/traces${filterQuery(filters, { q: key })}`, key, ' ↗');
}

function details(span, trace, children, byId, select, filters, stages) {
  const stage = stages.get(span.key);
  const kids = children.get(span.span_id) || [];
  const attributes = Object.keys(span.attributes || {}).sort();
  const row = (name, ...value) => [h('dt', null, name), h('dd', null, ...value)];
  const failed = isFailure(span.outcome);
  return h('aside', { class: 'detail', 'aria-label': 'span details', dataset: { key: span.key, spanId: span.span_id } },
    h('h2', null, span.name),
    h('dl', null,
      row('key', h('code', null, span.key), ' ', copyButton(span.key, 'copy key')),
      row('kind', kindName(span.kind), ' · ', span.source),
      row('state', span.state, span.outcome ? ' · ' : '', span.outcome ? h('span', { class: failed ? 'bad' : '' }, span.outcome) : ''),
      row('start', time(span.start), ` (${relative(span.start)})`),
      row('end', span.end ? [time(span.end), ` (${relative(span.end)})`] : 'open: still running'),
      row('duration', span.end ? duration(span.duration_seconds) : `${duration((Date.now() - millis(span.start)) / 1000)} so far`),
      span.repo ? row('repository', span.repo) : null,
      row('parent', span.parent_key ? spanLink(span.parent_key, trace, select, filters) : 'none (a root)'),
      kids.length ? row('children', h('ul', null, kids.map((k) => h('li', null, spanLink(k.key, trace, select, filters))))) : null,
      span.links && span.links.length ? row('links', h('ul', null, span.links.map((k) => h('li', null, spanLink(k, trace, select, filters))))) : null,
      span.trace_refs && span.trace_refs.length ? row('references', span.trace_refs.join(', ')) : null,
      stage ? row('lead time', h('ul', { class: 'stage-list' }, STAGES.map((name) => h('li', null,
        h('span', { class: `swatch stage-${name}` }), ` ${name} `, h('strong', null, duration(stage.seconds[name])), h('span', { class: 'muted' }, ` ${STAGE_WHAT[name]}`))),
      h('li', null, 'shipped by ', spanLink(stage.deploy_key, trace, select, filters)))) : null,
      (trace.waiting || []).some((w) => w.span_key === span.key)
        ? row('waiting for', (trace.waiting || []).filter((w) => w.span_key === span.key).map((w) => w.ref).join(', ')) : null,
      row('span id', h('code', null, span.span_id))),
    h('h3', null, 'Attributes'),
    attributes.length
      ? h('dl', { class: 'attributes' }, attributes.map((name) => row(name, externalLink(span.attributes[name]))))
      : empty('none'));
}
