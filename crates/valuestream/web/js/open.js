// Open work (`/open`): what is open now, oldest first, each against how
// long finished work of its kind took in the window (p50 and p90 from
// /api/v1/summary).

import { get } from './api.js';
import { h, empty, problem } from './dom.js';
import { count, duration, kindName, millis } from './format.js';
import { filterQuery } from './filters.js';
import { spanTable } from './kinds.js';

const PAGE = 100;

export async function render({ filters, window, params }) {
  if (!window.valid) return empty('Pick a time range whose start is before its end.');
  const kind = params.get('kind') || '';
  const scope = { repo: filters.repo, project: filters.project, source: filters.source };
  const [summary, first] = await Promise.all([
    get('/api/v1/summary', { group_by: 'kind', since: window.since, until: window.until, ...scope, environment: filters.environment }),
    get('/api/v1/spans', { state: 'open', kind, limit: PAGE, ...scope }),
  ]);
  const byKind = new Map(summary.groups.map((g) => [g.kind, g]));
  const now = Date.now();

  const tiles = h('section', { class: 'tiles small', 'aria-label': 'Open work by kind' },
    summary.groups.filter((g) => g.open > 0).map((g) => h('a', {
      class: `tile${kind === g.kind ? ' selected' : ''}`,
      href: `/open${filterQuery(filters, { kind: kind === g.kind ? null : g.kind })}`,
      'data-nav': true,
      dataset: { kind: g.kind, open: String(g.open) },
    },
    h('h3', null, kindName(g.kind)),
    h('p', { class: 'value' }, String(g.open), ' ', h('span', { class: 'unit' }, 'open at the range’s end')),
    h('p', { class: 'n' }, `then: p50 age ${duration(g.open_age_seconds.p50)} · oldest ${duration(g.open_age_seconds.max)}`),
    h('p', { class: 'n' }, `finished: p50 ${duration(g.duration_seconds.p50)}, p90 ${duration(g.duration_seconds.p90)} (${count(g.closed, 'closed')})`))));

  const compare = (span) => {
    const group = byKind.get(span.kind);
    const age = (now - millis(span.start)) / 1000;
    const d = group && group.duration_seconds;
    const noun = kindName(span.kind) + 's';
    if (!d || d.p50 == null) return { text: `no finished ${noun} in the window`, class: '' };
    if (d.p90 != null && age > d.p90) return { text: `older than 90 % of finished ${noun} (p90 ${duration(d.p90)})`, class: 'bad' };
    if (age > d.p50) return { text: `older than half of finished ${noun} (p50 ${duration(d.p50)})`, class: 'warn' };
    return { text: `younger than the median finished (p50 ${duration(d.p50)})`, class: '' };
  };
  const extra = [
    { label: 'age', value: (s) => duration((now - millis(s.start)) / 1000), class: 'num' },
    { label: 'vs finished work', class: 'wrap', value: (s) => h('span', { class: compare(s).class }, compare(s).text) },
  ];
  const list = h('section', { class: 'panel', 'aria-labelledby': 'open-title' },
    h('h2', { id: 'open-title' }, kind ? `Open ${kindName(kind)}s, oldest first` : 'Open work, oldest first'),
    h('p', { class: 'note' }, 'Open now, whatever the time range; the range picks the finished work each one is compared with.'));
  const table = h('div', null, spanTable(first.spans, extra, filters, { open: true }));
  list.append(table);
  let cursor = first.next_cursor;
  if (cursor) {
    const more = h('button', {
      type: 'button',
      onclick: async () => {
        more.disabled = true;
        try {
          const page = await get('/api/v1/spans', { state: 'open', kind, limit: PAGE, cursor, ...scope });
          table.append(spanTable(page.spans, extra, filters, { open: true }));
          cursor = page.next_cursor;
          if (cursor) more.disabled = false; else more.remove();
        } catch (error) {
          more.replaceWith(problem(error));
        }
      },
    }, `show the next ${PAGE}`);
    list.append(more);
  }
  return h('div', { class: 'page open' }, h('h1', null, 'Open work'),
    summary.groups.some((g) => g.open > 0) ? tiles : null,
    list);
}
