// The drill-down drawer (`/dora/{key}`, over the Delivery page): the rows
// behind one DORA count, from /api/v1/dora/items for the page's filters.
// Its `n` is the tile's count; every row opens its trace; CSV downloads the
// same rows. `at=` narrows it to one bucket of the page's series.

import { get, query } from './api.js';
import { h, empty, navLink } from './dom.js';
import { count, duration, millis, time, utc } from './format.js';
import { filterQuery } from './filters.js';

/** Rows drawn at most; `n` is always the whole count. */
const SHOWN = 500;

const short = (sha) => (sha ? String(sha).slice(0, 7) : 'none');
const ago = (item) => millis(item.time);
/** A link to the trace of another span, found by its key. */
const spanLink = (key, text = key) => (key ? navLink(`/traces${query({ q: key })}`, text) : 'none');

/** Each drawer: the tile it opens from, what a row is, and its columns. */
export const DRAWERS = {
  deployments: {
    tile: 'deployment_frequency',
    rows: ['successful deploy', 'successful deploys'],
    columns: [
      { label: 'repository', cell: (i) => i.repo || 'none', sort: (i) => i.repo || '' },
      { label: 'environment', cell: (i) => i.environment, sort: (i) => i.environment || '' },
      { label: 'sha', cell: (i) => h('code', { title: i.sha || '' }, short(i.sha)), sort: (i) => i.sha || '' },
      { label: 'changes', num: true, cell: (i) => (i.value == null ? 'sha unknown' : String(i.value)), sort: (i) => i.value ?? -1 },
    ],
  },
  changes: {
    tile: 'lead_time_for_changes',
    rows: ['change', 'changes'],
    columns: [
      { label: 'change', cell: (i) => [i.name, ' ', h('code', { title: i.sha }, short(i.sha))], sort: (i) => i.name },
      { label: 'deploy', cell: (i) => spanLink(i.deploy_key, i.deploy_key.split(':').pop()), sort: (i) => i.deploy_key },
      { label: 'lead time', num: true, cell: (i) => duration(i.value), sort: (i) => i.value ?? -1 },
      { label: 'coding', num: true, cell: (i) => duration(i.coding_seconds), sort: (i) => i.coding_seconds ?? -1 },
      { label: 'pickup', num: true, cell: (i) => duration(i.pickup_seconds), sort: (i) => i.pickup_seconds ?? -1 },
      { label: 'review', num: true, cell: (i) => duration(i.review_seconds), sort: (i) => i.review_seconds ?? -1 },
      { label: 'deploy time', num: true, cell: (i) => duration(i.deploy_seconds), sort: (i) => i.deploy_seconds ?? -1 },
      { label: 'timed from', cell: (i) => TIMED_FROM[i.reason] || i.reason, sort: (i) => i.reason },
    ],
  },
  failed: {
    tile: 'change_failure_rate',
    rows: ['failed deploy', 'failed deploys'],
    columns: [
      { label: 'repository', cell: (i) => i.repo || 'none', sort: (i) => i.repo || '' },
      { label: 'sha', cell: (i) => h('code', { title: i.sha || '' }, short(i.sha)), sort: (i) => i.sha || '' },
      { label: 'why it counts', cell: failedWhy, sort: (i) => i.reason },
    ],
  },
  incidents: {
    tile: 'time_to_restore',
    rows: ['incident', 'incidents'],
    columns: [
      { label: 'incident', cell: (i) => i.name, sort: (i) => i.name },
      { label: 'lasted', num: true, cell: (i) => duration(i.value), sort: (i) => i.value ?? -1 },
      { label: 'attributed to', cell: incidentWhy, sort: (i) => i.deploy_key || '' },
    ],
  },
  failures: {
    tile: 'failed_deployment_recovery_time',
    rows: ['failed deploy', 'failed deploys'],
    columns: [
      { label: 'repository', cell: (i) => i.repo || 'none', sort: (i) => i.repo || '' },
      { label: 'environment', cell: (i) => i.environment, sort: (i) => i.environment || '' },
      { label: 'recovered by', cell: (i) => (i.recovered_by ? spanLink(i.recovered_by) : 'not recovered yet'), sort: (i) => i.recovered_by || '' },
      { label: 'gap', num: true, cell: (i) => duration(i.value), sort: (i) => i.value ?? Infinity },
    ],
  },
  rework: {
    tile: 'deployment_rework_rate',
    rows: ['rework deploy', 'rework deploys'],
    columns: [
      { label: 'repository', cell: (i) => i.repo || 'none', sort: (i) => i.repo || '' },
      { label: 'sha', cell: (i) => h('code', { title: i.sha || '' }, short(i.sha)), sort: (i) => i.sha || '' },
      { label: 'why it is rework', cell: reworkWhy, sort: (i) => i.reason },
    ],
  },
};

const TIMED_FROM = {
  first_commit: "the pull request's first commit",
  pull_request_opened: 'the pull request opening',
  commit: 'the commit',
};

function failedWhy(i) {
  if (i.reason === 'failed') return h('span', { class: 'outcome failure' }, 'the deploy failed');
  const how = i.reason === 'incident_root_cause' ? 'named by its root cause line' : 'the last deploy before it';
  return ['caused ', spanLink(i.incident_key), ` (${how})`];
}

function incidentWhy(i) {
  if (i.reason === 'unattributed') return 'no production deploy before it';
  const how = i.reason === 'root_cause' ? 'its root cause line' : 'the last deploy before it';
  return [spanLink(i.deploy_key), ` (${how})`];
}

function reworkWhy(i) {
  const what = { revert: 'ships a revert: ', hotfix: 'ships a hotfix: ', incident: 'work for incident ' }[i.reason] || `${i.reason}: `;
  const by = i.made_by && i.made_by.includes(':') ? spanLink(i.made_by) : h('code', null, short(i.made_by));
  return [what, by];
}

/** The drawer key a tile opens. */
export function drawerOf(tileKey) {
  return Object.keys(DRAWERS).find((k) => DRAWERS[k].tile === tileKey);
}

/**
 * The drawer for `key`, over `dora` (the page's answer, with its series).
 * `at` names a bucket of the series: the drawer then lists that bucket's
 * rows (its window alone, which is what the bucket counts).
 */
export async function drawer({ key, at, dora, scope, window, filters, params, definitions }) {
  const spec = DRAWERS[key];
  const closeHref = `/${filterQuery(filters, { bucket: params.get('bucket') })}`;
  const bucket = at ? (dora.series || []).find((b) => b.start === at) : null;
  const since = bucket ? bucket.start : window.since;
  const until = bucket ? bucket.end : window.until;
  const itemsQuery = { ...scope, key, since, until };
  const def = definitions.dora[spec.tile];
  const title = h('h2', { id: 'drawer-title' }, def.title, at ? ` · ${bucketName(dora.bucket)} from ${utc(millis(at)).slice(0, 10)}` : '');
  const panel = h('aside', { class: 'drawer', role: 'dialog', 'aria-modal': 'false', 'aria-labelledby': 'drawer-title', dataset: { key } },
    h('p', { class: 'drawer-close' }, navLink(closeHref, '✕ close')),
    title,
    h('p', { class: 'note' }, def.definition));
  if (at && !bucket) {
    panel.append(empty(`No ${dora.bucket} starting ${at} in this window.`));
    return wrap(panel, closeHref);
  }
  // The newest rows only, past a few hundred: a page stays quick to draw;
  // the CSV has them all.
  const [answer, days] = await Promise.all([
    get('/api/v1/dora/items', { ...itemsQuery, limit: SHOWN }),
    // The deploys drawer's per-day strip: the same key per day, one call.
    key === 'deployments' ? get('/api/v1/dora', { ...scope, since, until, bucket: 'day' }).catch(() => null) : null,
  ]);
  const items = answer.items;
  const n = answer.count;
  const csv = `/api/v1/dora/items${query({ ...itemsQuery, format: 'csv' })}`;
  // Element.append would write a null as the text "null": leave those out.
  panel.append(...[
    h('p', { class: 'drawer-summary' },
      h('strong', { class: 'drawer-n', dataset: { n: String(n) } }, `n = ${n}`),
      h('span', null, `${spec.rows[n === 1 ? 0 : 1]}, ${key === 'incidents' ? 'closed' : 'ended'} ${utc(millis(since)).slice(0, 16)} – ${utc(millis(until)).slice(0, 16)} UTC`,
        scope.repo ? `, ${scope.repo}` : '', scope.project ? `, project ${scope.project}` : '',
        key === 'incidents' ? '' : `, ${dora.environment}`),
      h('a', { href: csv, download: `valuestream-${key}.csv`, class: 'csv' }, 'Download CSV')),
    days ? strip(days) : null,
    n > items.length ? h('p', { class: 'note' }, `The newest ${items.length} are listed (sorting sorts those); the CSV has all ${n}.`) : null,
    items.length ? table(spec, items, filters) : empty(`No ${spec.rows[1]} in this window.`),
  ].filter((part) => part != null));
  return wrap(panel, closeHref);
}

/** One cell per day of the drawer's window, shaded by its successful deploys (`/dora?bucket=day`). */
function strip(dora) {
  const series = dora.series || [];
  if (!series.length) return null;
  const most = Math.max(1, ...series.map((d) => d.deployment_frequency.deployments));
  const cells = series.map((d) => {
    const n = d.deployment_frequency.deployments;
    const day = utc(millis(d.start)).slice(0, 10);
    return h('span', {
      class: `day${n ? '' : ' none'}`,
      dataset: { dayDeploys: String(n) },
      style: n ? { opacity: String(0.3 + (0.7 * n) / most) } : null,
      title: `${day}: ${count(n, 'deploy')}`,
    }, n ? String(n) : '');
  });
  const active = series.filter((d) => d.deployment_frequency.deployments > 0).length;
  return h('div', { class: 'day-strip-wrap' },
    h('p', { class: 'note' }, `Per day (UTC): deploys on ${count(active, 'day')} of ${series.length}.`),
    h('div', { class: 'day-strip', role: 'img', 'aria-label': series.map((d) => `${utc(millis(d.start)).slice(0, 10)} ${d.deployment_frequency.deployments}`).join(', ') }, cells));
}

function bucketName(bucket) {
  return bucket === 'day' ? 'the day' : bucket === 'month' ? 'the month' : 'the week';
}

/** The panel over a backdrop; a click on the backdrop or Escape closes it. */
function wrap(panel, closeHref) {
  const backdrop = navLink(closeHref);
  backdrop.className = 'drawer-backdrop';
  backdrop.setAttribute('aria-label', 'close the drawer');
  backdrop.tabIndex = -1;
  const layer = h('div', { class: 'drawer-layer', dataset: { close: closeHref } }, backdrop, panel);
  return layer;
}

/** The rows, newest first, sortable by any column (a click on its header). */
function table(spec, items, filters) {
  const body = h('tbody');
  const draw = (list) => body.replaceChildren(...list.map((item) => row(spec, item, filters)));
  let sorted = { index: -1, down: true };
  const header = (label, index, num) => h('th', {
    scope: 'col',
    class: num ? 'num' : null,
    'aria-sort': 'none',
    tabindex: 0,
    onclick: (event) => sortBy(index, event.currentTarget),
    onkeydown: (event) => { if (event.key === 'Enter') sortBy(index, event.currentTarget); },
  }, label);
  const sortBy = (index, th) => {
    sorted = { index, down: sorted.index === index ? !sorted.down : index !== -1 };
    const key = index === -1 ? ago : spec.columns[index].sort;
    const list = [...items].sort((a, b) => {
      const [x, y] = [key(a), key(b)];
      const order = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
      return sorted.down ? -order : order;
    });
    for (const cell of th.parentElement.children) cell.setAttribute('aria-sort', 'none');
    th.setAttribute('aria-sort', sorted.down ? 'descending' : 'ascending');
    draw(list);
  };
  draw(items);
  return h('div', { class: 'scroll' }, h('table', { class: 'items' },
    h('thead', null, h('tr', null, header('time', -1, false), spec.columns.map((c, i) => header(c.label, i, c.num)))),
    body));
}

function row(spec, item, filters) {
  const trace = `/traces/${item.trace_id}${filterQuery(filters, { span: item.span_id })}`;
  return h('tr', { dataset: { spanKey: item.span_key, reason: item.reason } },
    h('td', null, navLink(trace, time(item.time))),
    spec.columns.map((c) => h('td', { class: c.num ? 'num' : null }, c.cell(item))));
}

// Escape closes an open drawer.
document.addEventListener('keydown', (event) => {
  if (event.key !== 'Escape') return;
  const layer = document.querySelector('.drawer-layer');
  if (layer) layer.querySelector('.drawer-backdrop').click();
});
