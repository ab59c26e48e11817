// Open work (`/open`): what is open now, oldest first, each against how
// long finished work of its kind took in the window (p50 and p90 from
// /api/v1/summary), and the work in progress at the end of each bucket of
// the window (the same call's `series`).

import { get } from './api.js';
import { h, empty, problem } from './dom.js';
import { count, duration, kindName, millis } from './format.js';
import { bucketOf, filterQuery } from './filters.js';
import { spanTable } from './kinds.js';
import { counts } from './charts.js';

const PAGE = 100;

/** What an open span is waiting for, where its payloads say (a pull request's first review). */
function substate(span) {
  const attributes = span.attributes || {};
  if (span.kind === 'pull_request') {
    return attributes['valuestream.first_review_at'] ? 'in review' : 'waiting for its first review';
  }
  return '';
}

/** The page of the work in the system it came from, when its payload gave one. */
function sourceLink(span) {
  const attributes = span.attributes || {};
  const url = attributes['valuestream.url'] || attributes['cicd.pipeline.run.url.full'] || attributes['cicd.pipeline.task.run.url.full'];
  if (typeof url !== 'string' || !/^https?:\/\//.test(url)) return '';
  return h('a', { href: url, target: '_blank', rel: 'noopener noreferrer', title: url }, `${span.source} ↗`);
}

export async function render({ filters, window, params }) {
  if (!window.valid) return empty('Pick a time range whose start is before its end.');
  const kind = params.get('kind') || '';
  const scope = { repo: filters.repo, project: filters.project, source: filters.source };
  const [summary, first] = await Promise.all([
    get('/api/v1/summary', { group_by: 'kind', since: window.since, until: window.until, ...scope, environment: filters.environment, bucket: bucketOf(params, window), histogram: 'true' }),
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
    { label: 'where it stands', class: 'wrap', value: (s) => { const text = substate(s); return h('span', { dataset: { substate: text } }, text); } },
    { label: 'in its tool', value: (s) => sourceLink(s) },
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
  const wip = progress(summary, bucketOf(params, window));
  const page = h('div', { class: 'page open' }, h('h1', null, 'Open work'),
    summary.groups.some((g) => g.open > 0) ? tiles : null,
    aging(summary),
    wip,
    list);
  page.mount = () => wip && wip.mount();
  return page;
}

const KIND_COLOURS = {
  issue: '#2456c9', pull_request: '#d08a1c', build: '#7b61c4', job: '#2e8fb0', deploy: '#3f9b5a', incident: '#b3261e',
};

/** A kind's colour, the same on every chart of the page. */
function kindColour(kind) {
  return KIND_COLOURS[kind] || '#8a94a6';
}

const AGE_LABELS = ['< 1 d', '1–3 d', '3–7 d', '1–2 w', '2–4 w', '> 4 w'];

/**
 * The aging chart: how old the open work was at the range's end, in the
 * API's age buckets (`open_age_histogram`, cumulative), a segment per kind.
 */
function aging(summary) {
  const groups = summary.groups.filter((g) => g.open > 0 && g.open_age_histogram);
  if (!groups.length) return null;
  const perBucket = AGE_LABELS.map((label, j) => ({
    label,
    counts: groups.map((g) => {
      const hist = g.open_age_histogram;
      const at = (i) => (i < 0 ? 0 : i >= hist.counts.length ? hist.count : hist.counts[i]);
      return at(j) - at(j - 1);
    }),
  }));
  const most = Math.max(1, ...perBucket.map((b) => b.counts.reduce((x, y) => x + y, 0)));
  const legend = h('p', { class: 'note' }, 'Age at the range’s end, per kind: ',
    groups.map((g) => h('span', { class: 'legend' }, h('span', { class: 'swatch', style: { background: kindColour(g.kind) } }), ` ${kindName(g.kind)} (${g.open}) `)));
  const rows = perBucket.map((b) => {
    const total = b.counts.reduce((x, y) => x + y, 0);
    return h('div', { class: 'hist-row', dataset: { age: b.label, count: String(total) } },
      h('span', null, b.label),
      h('div', { class: 'hist-bar', role: 'img', 'aria-label': `${b.label}: ${groups.map((g, i) => `${b.counts[i]} ${kindName(g.kind)}`).join(', ')}` },
        b.counts.map((c, i) => (c ? h('div', { style: { width: `${(100 * c) / most}%`, background: kindColour(groups[i].kind) }, title: `${kindName(groups[i].kind)}: ${c}` }) : null))),
      h('span', { class: 'num' }, String(total)));
  });
  return h('section', { class: 'panel aging', 'aria-labelledby': 'aging-title' },
    h('h2', { id: 'aging-title' }, 'How old the open work is'), legend, h('div', { class: 'hist' }, rows));
}

/** Work in progress: per kind, the spans open at the end of each bucket. */
function progress(summary, bucket) {
  const series = summary.series || [];
  const kinds = [...new Set(series.flatMap((b) => b.groups.filter((g) => g.open > 0).map((g) => g.kind)))].sort();
  if (!series.length || !kinds.length) return null;
  const lines = kinds.map((kind) => ({
    label: kindName(kind),
    kind,
    values: series.map((b) => (b.groups.find((g) => g.kind === kind) || { open: 0 }).open),
    color: kindColour(kind),
  }));
  const wip = Object.fromEntries(lines.map((l) => [l.kind, l.values]));
  const chart = h('div', { class: 'chart', dataset: { wip: JSON.stringify(wip), wipBucket: bucket }, role: 'img', 'aria-label': `open at the end of each ${bucket}: ` + lines.map((l) => `${l.label} ${l.values.join(', ')}`).join('; ') });
  const section = h('section', { class: 'panel wip', 'aria-labelledby': 'wip-title' },
    h('h2', { id: 'wip-title' }, `Work in progress at the end of each ${bucket}`),
    h('p', { class: 'note' }, 'Spans open at each point (started, not yet ended or expired), per kind.'),
    chart);
  section.mount = () => counts(chart, series.map((b) => millis(b.end) / 1000), lines);
  return section;
}
