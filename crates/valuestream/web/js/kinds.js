// Distributions (`/kinds`): the summary per kind and group from
// /api/v1/summary, sortable; a row opens its spans from /api/v1/spans.

import { get } from './api.js';
import { h, empty, navLink, problem } from './dom.js';
import { count, duration, isFailure, kindName, number, percent, time } from './format.js';
import { BUCKETS, bucketOf, filterQuery } from './filters.js';
import { durations } from './charts.js';

export const GROUPS = ['repo', 'project', 'source', 'outcome', 'environment'];
// Filters /api/v1/spans takes, for a row's spans.
const SPAN_FILTERS = ['source', 'kind', 'repo', 'project', 'environment', 'outcome'];

const COLUMNS = [
  { id: 'closed', label: 'closed', value: (g) => g.closed, show: (v) => String(v), doc: 'closed' },
  { id: 'per_day', label: 'per day', value: (g) => g.per_day, show: (v) => number(v), doc: 'per_day' },
  { id: 'ratio', label: 'success / merged', value: (g) => g.success_ratio ?? g.merge_ratio, show: (v) => percent(v), doc: 'success_ratio' },
  { id: 'mean', label: 'mean', value: (g) => g.duration_seconds.mean, show: duration, doc: 'duration_seconds' },
  { id: 'p50', label: 'p50', value: (g) => g.duration_seconds.p50, show: duration, doc: 'duration_seconds' },
  { id: 'p90', label: 'p90', value: (g) => g.duration_seconds.p90, show: duration, doc: 'duration_seconds' },
  { id: 'p95', label: 'p95', value: (g) => g.duration_seconds.p95, show: duration, doc: 'duration_seconds' },
  { id: 'p99', label: 'p99', value: (g) => g.duration_seconds.p99, show: duration, doc: 'duration_seconds' },
  { id: 'max', label: 'max', value: (g) => g.duration_seconds.max, show: duration, doc: 'duration_seconds' },
  { id: 'open', label: 'open', value: (g) => g.open, show: (v) => String(v), doc: 'open' },
  { id: 'open_p50', label: 'open p50 age', value: (g) => g.open_age_seconds.p50, show: duration, doc: 'open_age_seconds' },
];

function plain(text) {
  return String(text).replaceAll('`', '');
}

export async function render({ filters, window, params, definitions, navigate }) {
  if (!window.valid) return empty('Pick a time range whose start is before its end.');
  const group = GROUPS.includes(params.get('group_by')) ? params.get('group_by') : 'repo';
  const kind = params.get('kind') || '';
  const sort = params.get('sort') || 'closed';
  const descending = params.get('order') !== 'asc';
  const summary = await get('/api/v1/summary', {
    group_by: `kind,${group}`,
    since: window.since, until: window.until,
    repo: filters.repo, project: filters.project, environment: filters.environment, source: filters.source,
  });
  const here = (extra) => `/kinds${filterQuery(filters, { group_by: group, kind, sort, order: descending ? null : 'asc', ...extra })}`;

  const kinds = [...new Set(summary.groups.map((g) => g.kind))].sort();
  const kindTabs = h('nav', { class: 'subtabs', 'aria-label': 'Kinds' },
    [['', 'all kinds'], ...kinds.map((k) => [k, kindName(k)])].map(([k, label]) =>
      navLink(here({ kind: k || null, value: null }), label)),
  );
  kindTabs.querySelectorAll('a').forEach((a, i) => { if ((i === 0 && !kind) || kinds[i - 1] === kind) a.setAttribute('aria-current', 'page'); });
  const groupPicker = h('p', { class: 'group-by' }, 'group by ',
    GROUPS.map((g) => g === group
      ? h('strong', { 'aria-current': 'true' }, g)
      : navLink(here({ group_by: g, value: null }), g)));

  const rows = summary.groups.filter((g) => !kind || g.kind === kind);
  const column = COLUMNS.find((c) => c.id === sort) || COLUMNS[0];
  rows.sort((a, b) => {
    const x = column.value(a); const y = column.value(b);
    if (x == null && y == null) return 0;
    if (x == null) return 1;
    if (y == null) return -1;
    return descending ? y - x : x - y;
  });

  const selected = params.has('value') ? { kind: params.get('kind'), value: params.get('value') } : null;
  const header = h('tr', null,
    h('th', { scope: 'col' }, 'kind'),
    h('th', { scope: 'col' }, group),
    COLUMNS.map((c) => h('th', {
      scope: 'col',
      class: 'num',
      'aria-sort': c.id === sort ? (descending ? 'descending' : 'ascending') : null,
      title: plain(definitions.summary[c.doc] || ''),
    }, navLink(here({ sort: c.id, order: c.id === sort && descending ? 'asc' : null }), c.label, c.id === sort ? (descending ? ' ↓' : ' ↑') : ''))));
  const body = rows.map((g) => {
    const value = g[group];
    const open = () => navigate(here({ kind: g.kind, value: value ?? '' }));
    const isSelected = selected && selected.kind === g.kind && selected.value === (value ?? '');
    return h('tr', {
      tabindex: 0,
      class: isSelected ? 'selected' : '',
      'aria-selected': String(!!isSelected),
      dataset: { kind: g.kind, group: value ?? '', closed: String(g.closed) },
      onclick: open,
      onkeydown: (e) => { if (e.key === 'Enter') open(); },
    },
    h('th', { scope: 'row' }, kindName(g.kind)),
    h('td', null, value ?? h('span', { class: 'muted' }, 'none')),
    COLUMNS.map((c) => h('td', { class: 'num' }, c.show(c.value(g)))));
  });
  const table = rows.length
    ? h('div', { class: 'scroll' }, h('table', { class: 'summary' },
      h('caption', null, `${count(rows.length, 'group')}; a row lists its spans`), h('thead', null, header), h('tbody', null, body)))
    : empty('No span of this kind closed or was open in this window.');

  const page = h('div', { class: 'page kinds' }, h('h1', null, 'Distributions'), kindTabs, groupPicker, table, boxes(rows, group));
  if (kind) {
    const [histogram, trend] = await Promise.all([
      histogramOf(kind, filters, window, params, here),
      trendOf(kind, filters, window, params, here).catch((error) => h('section', { class: 'panel trend' }, problem(error))),
    ]);
    page.append(histogram, trend);
    page.mount = () => trend.mount && trend.mount();
  }
  if (selected) page.append(await spansOf(selected, group, filters, window));
  return page;
}

/**
 * The kind's p50 and p90 duration per day, week or month
 * (`/api/v1/summary?bucket=`, one call), over the spans that closed in each.
 */
async function trendOf(kind, filters, window, params, here) {
  const bucket = bucketOf(params, window);
  const summary = await get('/api/v1/summary', {
    group_by: 'kind', kind, bucket,
    since: window.since, until: window.until,
    repo: filters.repo, project: filters.project, environment: filters.environment, source: filters.source,
  });
  const series = summary.series.map((b) => ({ start: b.start, group: b.groups.find((g) => g.kind === kind) }));
  const section = h('section', { class: 'panel trend', 'aria-labelledby': 'trend-title' },
    h('h2', { id: 'trend-title' }, `${kindName(kind)} durations per ${bucket}`));
  const picker = h('p', { class: 'group-by' }, 'per ', BUCKETS.map((b) => (b === bucket
    ? h('strong', { 'aria-current': 'true' }, b)
    : navLink(here({ kind, bucket: b }), b))));
  const closed = series.filter((b) => b.group && b.group.closed > 0);
  if (!closed.length) {
    section.append(picker, empty('None closed in this window.'));
    return section;
  }
  const p50 = series.map((b) => b.group?.duration_seconds?.p50 ?? null);
  const p90 = series.map((b) => b.group?.duration_seconds?.p90 ?? null);
  const chart = h('div', { class: 'chart', dataset: { trendBucket: bucket, medians: JSON.stringify(p50) }, role: 'img', 'aria-label': `${kindName(kind)} p50 per ${bucket}: ` + series.map((b, i) => `${time(b.start)} ${p50[i] == null ? 'none' : duration(p50[i])}`).join(', ') });
  section.append(picker, chart, h('p', { class: 'note' }, `Of the spans that closed in each ${bucket}; a gap is a ${bucket} where none closed.`));
  section.mount = () => durations(chart, series.map((b) => Date.parse(b.start) / 1000), [
    { label: 'p50', values: p50, color: '#2456c9' },
    { label: 'p90', values: p90, color: '#7b61c4', dash: [6, 4] },
  ], { log: true });
  return section;
}

/**
 * A box-whisker per group of the table, on one log axis: the box reaches the
 * p50, a thick whisker the p90, a thin one the p99 (the API's percentiles;
 * the page only places them).
 */
function boxes(rows, group) {
  const drawn = rows.filter((g) => g.duration_seconds && g.duration_seconds.p50 != null);
  if (!drawn.length) return null;
  const values = drawn.flatMap((g) => [g.duration_seconds.p50, g.duration_seconds.p99]).filter((v) => v > 0);
  if (!values.length) return null;
  const low = Math.log10(Math.max(1, Math.min(...values) / 2));
  const high = Math.log10(Math.max(...values) * 1.5);
  const at = (seconds) => `${(100 * (Math.log10(Math.max(1, seconds)) - low) / Math.max(1e-9, high - low)).toFixed(2)}%`;
  const line = (from, to, cls) => h('span', { class: cls, style: { left: at(from), width: `calc(${at(to)} - ${at(from)})` } });
  const lines = drawn.map((g) => {
    const d = g.duration_seconds;
    const label = `${kindName(g.kind)}, ${g[group] ?? 'none'}`;
    return h('div', { class: 'box-row', dataset: { box: label } },
      h('span', { class: 'box-label', title: label }, label),
      h('span', { class: 'box-track', role: 'img', 'aria-label': `${label}: p50 ${duration(d.p50)}, p90 ${duration(d.p90)}, p99 ${duration(d.p99)}`, title: `p50 ${duration(d.p50)} · p90 ${duration(d.p90)} · p99 ${duration(d.p99)}` },
        h('span', { class: 'box', style: { left: '0', width: at(d.p50) } }),
        line(d.p50, d.p90, 'whisker thick'),
        line(d.p90, d.p99, 'whisker')),
      h('span', { class: 'num' }, duration(d.p50)));
  });
  const ticks = [60, 3600, 86400, 7 * 86400, 30 * 86400].filter((t) => Math.log10(t) > low && Math.log10(t) < high);
  return h('section', { class: 'panel boxes', 'aria-labelledby': 'boxes-title' },
    h('h2', { id: 'boxes-title' }, 'How the groups compare'),
    h('p', { class: 'note' }, 'Per group, on a log scale: the box reaches the median (p50), the thick whisker the p90, the thin one the p99; the number is the p50.'),
    h('div', { class: 'box-rows' }, lines,
      h('div', { class: 'box-row axis', 'aria-hidden': 'true' }, h('span'), h('span', { class: 'box-track' },
        ticks.map((t) => h('span', { class: 'box-tick', style: { left: at(t) } }, duration(t)))), h('span'))));
}

const OTHER_COLOURS = ['#2456c9', '#d08a1c', '#7b61c4', '#2e8fb0'];

/** An outcome's colour: failures red, success green, the rest from a palette (the legend names them all). */
function outcomeColour(outcome, index) {
  if (isFailure(outcome)) return '#b3261e';
  if (['success', 'merged', 'completed'].includes(outcome)) return '#3f9b5a';
  if (['cancelled', 'skipped', 'closed', 'not_planned'].includes(outcome)) return '#8a94a6';
  return OTHER_COLOURS[index % OTHER_COLOURS.length];
}

/** A bucket's label from its bounds (seconds): `≤ 30m`, `1h – 3h`, `> 30d`. */
function bucketLabel(lower, upper) {
  if (upper == null) return `> ${duration(lower)}`;
  return lower === 0 ? `≤ ${duration(upper)}` : `${duration(lower)} – ${duration(upper)}`;
}

/**
 * How long the kind's closed spans took, in the Prometheus buckets of
 * /metrics (`histogram=true`), one bar segment per outcome; a bucket lists
 * its spans (`hist=` the bucket's index) from /api/v1/spans' duration filters.
 */
async function histogramOf(kind, filters, window, params, here) {
  const summary = await get('/api/v1/summary', {
    group_by: 'kind,outcome', kind, histogram: 'true',
    since: window.since, until: window.until,
    repo: filters.repo, project: filters.project, environment: filters.environment, source: filters.source,
  });
  const groups = summary.groups.filter((g) => g.kind === kind && g.closed > 0);
  const section = h('section', { class: 'panel histogram', 'aria-labelledby': 'histogram-title' },
    h('h2', { id: 'histogram-title' }, `How long ${kindName(kind)} spans took`));
  if (!groups.length) {
    section.append(empty('None closed in this window.'));
    return section;
  }
  const bounds = groups[0].histogram.le_seconds;
  // Per bucket (the last: longer than the last bound), each outcome's count.
  const perBucket = [...bounds, null].map((upper, i) => ({
    lower: i === 0 ? 0 : bounds[i - 1],
    upper,
    counts: groups.map((g) => {
      const at = (j) => (j < 0 ? 0 : j >= bounds.length ? g.histogram.count : g.histogram.counts[j]);
      return at(i) - at(i - 1);
    }),
  }));
  const most = Math.max(1, ...perBucket.map((b) => b.counts.reduce((a, c) => a + c, 0)));
  const picked = params.has('hist') ? Number(params.get('hist')) : null;
  const legend = h('p', { class: 'note' }, 'Closed in the window, by outcome: ',
    groups.map((g, i) => h('span', { class: 'legend' }, h('span', { class: 'swatch', style: { background: outcomeColour(g.outcome, i) } }), ` ${g.outcome || 'none'} (${g.closed}) `)),
    '— the buckets are those of /metrics; a bucket lists its spans.');
  const rows = perBucket.map((b, i) => {
    const total = b.counts.reduce((a, c) => a + c, 0);
    return h('div', { class: `hist-row${picked === i ? ' selected' : ''}`, dataset: { bucket: String(i), count: String(total) } },
      navLink(here({ hist: String(i), value: null }), bucketLabel(b.lower, b.upper)),
      h('div', { class: 'hist-bar', role: 'img', 'aria-label': groups.map((g, j) => `${g.outcome || 'none'} ${b.counts[j]}`).join(', ') },
        b.counts.map((c, j) => (c ? h('div', { style: { width: `${(100 * c) / most}%`, background: outcomeColour(groups[j].outcome, j) }, title: `${groups[j].outcome || 'none'}: ${c}` }) : null))),
      h('span', { class: 'num' }, String(total)));
  });
  section.append(legend, h('div', { class: 'hist' }, rows));
  if (picked != null && perBucket[picked]) section.append(await bucketSpans(kind, perBucket[picked], filters, window));
  return section;
}

async function bucketSpans(kind, bucket, filters, window) {
  const scope = { kind };
  for (const name of SPAN_FILTERS) if (filters[name] && name !== 'kind') scope[name] = filters[name];
  const { spans, next_cursor } = await get('/api/v1/spans', {
    ...scope, since: window.since, until: window.until, order: '-duration', limit: 200,
    min_duration: String(bucket.lower), max_duration: bucket.upper == null ? null : String(bucket.upper),
  });
  return h('div', { class: 'bucket-spans' },
    h('h3', null, `${kindName(kind)} spans that took ${bucketLabel(bucket.lower, bucket.upper)}, longest first`),
    h('p', { class: 'note' }, `${count(spans.length, 'span')}${next_cursor ? ' (the first 200)' : ''} that started in the window (the bars count by end).`),
    spanTable(spans, [], filters));
}

async function spansOf(selected, group, filters, window) {
  const scope = { kind: selected.kind };
  for (const name of SPAN_FILTERS) if (filters[name] && name !== 'kind') scope[name] = filters[name];
  const section = h('section', { class: 'panel spans', 'aria-labelledby': 'spans-title' },
    h('h2', { id: 'spans-title' }, `${kindName(selected.kind)} spans, ${group} ${selected.value || 'none'}`));
  if (!selected.value) {
    section.append(empty(`The spans API cannot filter for a missing ${group}; narrow by another group.`));
    return section;
  }
  if (SPAN_FILTERS.includes(group)) scope[group] = selected.value;
  try {
    const { spans, next_cursor } = await get('/api/v1/spans', { ...scope, since: window.since, until: window.until, limit: 200 });
    section.append(h('p', { class: 'note' },
      `${count(spans.length, 'span')}${next_cursor ? ' (the first 200)' : ''} that started in the window. The table counts a span by when it ended, so one that started before the window and ended in it is in "closed" but not here.`));
    section.append(spanTable(spans, [], filters));
  } catch (error) {
    section.append(problem(error));
  }
  return section;
}

/**
 * Spans as rows; each opens its trace with the span selected. `open`: spans
 * without an end, whose `extra` columns (their age) come right after the name.
 */
export function spanTable(spans, extra = [], filters = {}, { open = false } = {}) {
  if (!spans.length) return empty('No spans.');
  const columns = [
    { label: 'repository', value: (s) => s.repo || '' },
    { label: 'started', value: (s) => time(s.start) },
    ...(open ? [] : [
      { label: 'duration', class: 'num', value: (s) => (s.end ? duration(s.duration_seconds) : 'open') },
      { label: 'outcome', class: (s) => (isFailure(s.outcome) ? 'bad' : ''), value: (s) => s.outcome || (s.end ? '' : 'open') },
    ]),
  ];
  const all = open ? [...extra, ...columns] : [...columns, ...extra];
  const classOf = (column, span) => (typeof column.class === 'function' ? column.class(span) : column.class || '');
  return h('div', { class: 'scroll' }, h('table', { class: 'spans' },
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'name'), all.map((c) => h('th', { scope: 'col' }, c.label)))),
    h('tbody', null, spans.map((s) => h('tr', { dataset: { key: s.key } },
      h('td', null, navLink(`/traces/${s.trace_id}${filterQuery(filters, { span: s.span_id })}`, s.name)),
      all.map((c) => h('td', { class: classOf(c, s) }, c.value(s))))))));
}
