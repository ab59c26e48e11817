// Traces (`/traces`, `/traces/{trace_id}?span={span_id}`): a search box
// over the window's traces (tracelist.js), and
// a trace as a waterfall of plain DOM rows — a tree by parent, dates on the
// ruler, open spans drawn to now — with the selected span's details.

import { get } from './api.js';
import { h, fill, empty, externalLink, navLink, problem } from './dom.js';
import { duration, isFailure, kindName, millis, relative, tick, time, utc } from './format.js';
import { filterQuery } from './filters.js';
import { traceList } from './tracelist.js';

const TRACE_ID = /^[0-9a-f]{32}$/i;

// The last trace drawn, so selecting a span redraws without a new request.
let cached = { id: null, trace: null };
// Subtrees folded by the viewer, by span id (kept while the page lives).
const collapsed = new Set();

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
  cached = { id: trace.trace_id, trace };
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
    cached = { id, trace };
  }
  const selectedId = params.get('span');
  return h('div', { class: 'page traces' },
    searchForm('', navigate, filters),
    waterfall(trace, selectedId, navigate, filters));
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

const STEPS = [3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400].map((s) => s * 1000);

function ruler(t0, t1) {
  const span = t1 - t0;
  const most = globalThis.innerWidth && globalThis.innerWidth < 600 ? 3 : 6;
  const step = STEPS.find((s) => span / s <= most) || STEPS[STEPS.length - 1];
  const withHour = step < 86400000;
  // Ticks on local midnights for day steps, local hours otherwise.
  const first = new Date(t0);
  if (withHour) first.setMinutes(0, 0, 0); else first.setHours(0, 0, 0, 0);
  const ticks = [];
  for (let t = first.getTime(); t <= t1; t += step) {
    // A label needs room on its right: none in the last stretch of the lane.
    if (t < t0 || (t - t0) / span > 0.9) continue;
    ticks.push(h('span', { class: 'tick', style: { left: `${((t - t0) / span) * 100}%` }, title: utc(t) }, tick(t, withHour)));
  }
  return h('div', { class: 'row ruler', 'aria-hidden': 'true' },
    h('div', { class: 'label' }, h('span', { title: utc(t0) }, 'span'), ' '),
    h('div', { class: 'lane' }, ticks));
}

function waterfall(trace, selectedId, navigate, filters) {
  const spans = trace.spans;
  const now = Date.now();
  const { rows, children, byId } = treeOf(spans);
  const t0 = Math.min(...spans.map((s) => millis(s.start)));
  const anyOpen = spans.some((s) => !s.end);
  const t1 = Math.max(...spans.map((s) => (s.end ? millis(s.end) : now)), anyOpen ? now : 0, t0 + 1000);
  const scale = (ms) => ((ms - t0) / (t1 - t0)) * 100;
  const selected = selectedId ? byId.get(selectedId) : null;
  const root = rows.length ? rows[0].span : spans[0];
  const sources = [...new Set(spans.map((s) => s.source))].sort();
  const errors = spans.filter((s) => isFailure(s.outcome)).length;
  const open = spans.filter((s) => !s.end).length;
  const select = (span) => navigate(`/traces/${trace.trace_id}${filterQuery(filters, { span: span.span_id })}`);

  const header = h('header', { class: 'trace-head' },
    h('h1', null, root.name),
    h('p', { class: 'facts' },
      h('span', null, 'trace ', h('code', { class: 'trace-id' }, trace.trace_id), ' ', copyButton(trace.trace_id, 'copy trace id')),
      h('span', null, 'started ', time(root.start)),
      h('span', null, anyOpen ? `open for ${duration((now - t0) / 1000)} so far` : `lasted ${duration((t1 - t0) / 1000)}`),
      h('span', null, `${spans.length} spans`),
      h('span', null, `sources: ${sources.join(', ')}`),
      errors ? h('span', { class: 'bad' }, `${errors} failed`) : null,
      open ? h('span', null, `${open} open`) : null,
      h('a', { href: `/api/v1/traces/${trace.trace_id}`, target: '_blank', rel: 'noopener' }, 'JSON')));

  const tree = h('div', { class: 'waterfall', role: 'tree', 'aria-label': `spans of ${root.name}` });
  tree.append(ruler(t0, t1));
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
      span.state === 'expired' ? h('span', { class: 'outcome open', title: 'no end arrived within --expire-open-after' }, 'expired') : null),
    h('div', { class: 'lane' },
      h('div', {
        class: `bar kind-${span.kind} ${failed ? 'failed' : ''} ${span.end ? '' : 'open'}`,
        style: { left: `${scale(start)}%`, width: `${Math.max(scale(end) - scale(start), 0.4)}%` },
        title: `${utc(start)} → ${span.end ? utc(end) : 'now (open)'}`,
      }),
      h('span', { class: 'dur', style: scale(start) > 70 ? { right: `${100 - scale(start) + 0.5}%` } : { left: `${Math.min(scale(end), 99) + 0.5}%` } },
        span.end ? duration(span.duration_seconds) : `${duration((now - start) / 1000)} so far`)));
    tree.append(el);
  }
  tree.addEventListener('keydown', (event) => keyboard(event, tree, byId, select));

  const detail = selected ? details(selected, trace, children, byId, select, filters)
    : h('aside', { class: 'detail', 'aria-label': 'span details' }, empty('Select a span (click, or Enter on a row) to see its details.'));
  const layout = h('div', { class: 'trace-layout' }, h('div', { class: 'scroll' }, tree), detail);
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
    const fresh = waterfall(trace, selectedId, navigate, filters);
    const host = tree.closest('.page');
    if (host) host.replaceChild(fresh, host.lastChild);
    const again = host && host.querySelector(`[data-span-id="${id}"]`);
    if (again) again.focus();
  }
}

function keyboard(event, tree, byId, select) {
  const rows = [...tree.querySelectorAll('[role="treeitem"]')];
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

function details(span, trace, children, byId, select, filters) {
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
      row('span id', h('code', null, span.span_id))),
    h('h3', null, 'Attributes'),
    attributes.length
      ? h('dl', { class: 'attributes' }, attributes.map((name) => row(name, externalLink(span.attributes[name]))))
      : empty('none'));
}
