// The trace list under the Traces page's search box: the window's traces
// from GET /api/v1/traces (newest first), as a scatter (x = start, y =
// duration on a log axis, red = an error, orange = still open) and a table.
// A point or a row opens the trace. `errors=1`, `open=1` and `q=` narrow it.

import { get } from './api.js';
import { scatter } from './charts.js';
import { h, empty, navLink } from './dom.js';
import { count, duration, kindName, millis, time } from './format.js';
import { filterQuery } from './filters.js';

const LIMIT = 200;

const ORDERS = {
  recent: { label: 'most recent', sort: (a, b) => millis(b.start) - millis(a.start) },
  longest: { label: 'longest', sort: (a, b) => lasted(b) - lasted(a) },
  errors: { label: 'most errors', sort: (a, b) => b.errors - a.errors || millis(b.start) - millis(a.start) },
};

/** Seconds a trace lasted, or has lasted so far while open. */
function lasted(trace, now = Date.now()) {
  return trace.duration_seconds ?? Math.max(1, (now - millis(trace.start)) / 1000);
}

export async function traceList({ filters, window, params, navigate, text }) {
  const onlyErrors = params.get('errors') === '1';
  const onlyOpen = params.get('open') === '1';
  const order = ORDERS[params.get('sort')] ? params.get('sort') : 'recent';
  const answer = await get('/api/v1/traces', {
    since: window.since,
    until: window.until,
    repo: filters.repo,
    q: text,
    has_error: onlyErrors ? 'true' : null,
    open: onlyOpen ? 'true' : null,
    limit: LIMIT,
  });
  const traces = answer.traces;
  const keep = { q: text || null, errors: onlyErrors ? '1' : null, open: onlyOpen ? '1' : null, sort: order === 'recent' ? null : order };
  const here = (change) => `/traces${filterQuery(filters, { ...keep, ...change })}`;
  const toggles = h('p', { class: 'group-by' },
    navLink(here({ errors: onlyErrors ? null : '1' }), onlyErrors ? '☑ with errors' : '☐ with errors'),
    navLink(here({ open: onlyOpen ? null : '1' }), onlyOpen ? '☑ still open' : '☐ still open'),
    ' · sort by ',
    Object.entries(ORDERS).map(([name, o]) => (name === order
      ? h('strong', { 'aria-current': 'true' }, o.label)
      : navLink(here({ sort: name === 'recent' ? null : name }), o.label))));
  const heading = text ? `Traces with a span named or keyed “${text}”` : 'Traces that started in the window';
  const section = h('section', { class: 'panel trace-list', 'aria-labelledby': 'trace-list-title', dataset: { count: String(traces.length) } },
    h('h2', { id: 'trace-list-title' }, heading),
    toggles,
    h('p', { class: 'note' }, `${count(traces.length, 'trace')}${answer.next_cursor ? ` (the newest ${LIMIT}; narrow the window or the filters for the rest)` : ''}.`));
  if (!traces.length) {
    section.append(empty('No trace in this window matches.'));
    return section;
  }
  const link = (t) => `/traces/${t.trace_id}${filterQuery(filters)}`;
  const chart = h('div', { class: 'chart scatter', role: 'img', 'aria-label': `${count(traces.length, 'trace')} by start and duration; ${traces.filter((t) => t.errors).length} with errors, ${traces.filter((t) => t.open).length} still open` });
  const byStart = [...traces].sort((a, b) => millis(a.start) - millis(b.start));
  section.mount = () => scatter(chart, byStart.map((t) => millis(t.start) / 1000), [
    { label: 'ended', values: byStart.map((t) => (!t.errors && !t.open ? lasted(t) : null)), color: '#2456c9' },
    { label: 'still open', values: byStart.map((t) => (t.open && !t.errors ? lasted(t) : null)), color: '#d08a1c' },
    { label: 'with errors', values: byStart.map((t) => (t.errors ? lasted(t) : null)), color: '#b3261e' },
  ], { onPick: (i) => navigate(link(byStart[i])) });
  section.append(h('p', { class: 'note' }, 'Each point is a trace: when it started and how long it took (so far, for an open one), on a log scale. Click one to open it.'), chart);
  const rows = [...traces].sort(ORDERS[order].sort);
  section.append(h('div', { class: 'scroll' }, h('table', { class: 'traces-table' },
    h('thead', null, h('tr', null, ['trace', 'kind', 'started', 'duration', 'spans', 'sources', 'errors', 'open', 'waiting'].map((c) => h('th', { scope: 'col', class: ['duration', 'spans', 'errors', 'open', 'waiting'].includes(c) ? 'num' : null }, c)))),
    h('tbody', null, rows.map((t) => h('tr', { dataset: { traceId: t.trace_id } },
      h('td', null, navLink(link(t), t.root.name || t.root.key)),
      h('td', null, kindName(t.root.kind)),
      h('td', null, time(t.start)),
      h('td', { class: 'num' }, t.end ? duration(t.duration_seconds) : `${duration(lasted(t))} so far`),
      h('td', { class: 'num' }, String(t.spans)),
      h('td', null, t.sources.join(', ')),
      h('td', { class: t.errors ? 'num bad' : 'num' }, String(t.errors)),
      h('td', { class: 'num' }, String(t.open)),
      h('td', { class: 'num' }, String(t.pending_refs))))))));
  return section;
}
