// Delivery (`/`): the six DORA tiles, each against the previous period of
// the same length, the lead-time breakdown, trends and the recent production
// deploys. Two calls of /api/v1/dora, the newest rows of two
// /api/v1/dora/items lists, and /api/v1/meta for the coverage notes;
// the page formats what they say and computes no metric. A tile, a bar or a
// point opens the drill-down drawer (`/dora/{key}`, drawer.js) over it.

import { get, query } from './api.js';
import { bars, durations, sparkline } from './charts.js';
import { h, empty, navLink } from './dom.js';
import { count, duration, isFailure, millis, number, percent, relative, tick, time, utc } from './format.js';
import { BUCKETS, bucketOf, filterQuery, meta } from './filters.js';
import { DRAWERS, drawer, drawerOf } from './drawer.js';

/** Each tile: where its value is, how to show it, its `n`, and which way is better. */
const TILES = [
  {
    key: 'deployment_frequency',
    value: (d) => d.per_day,
    show: (v) => [number(v), ' ', h('span', { class: 'unit' }, 'per day')],
    n: (d) => d.deployments,
    detail: (d) => `${count(d.deployments, 'deploy')} · ${number(d.deployment_days_per_week, 1)} ${d.deployment_days_per_week === 1 ? 'deploy day' : 'deploy days'} a week`,
    better: 'higher',
    delta: (a, b) => `${sign(a - b)}${number(Math.abs(a - b))} per day`,
  },
  {
    key: 'lead_time_for_changes',
    value: (d) => d.median_seconds,
    show: (v) => [duration(v), ' ', h('span', { class: 'unit' }, 'median')],
    n: (d) => d.changes,
    detail: (d) => `${count(d.changes, 'change')} · p90 ${duration(d.p90_seconds)}`,
    better: 'lower',
    delta: (a, b) => `${sign(a - b)}${duration(Math.abs(a - b))}`,
  },
  {
    key: 'change_failure_rate',
    value: (d) => d.ratio,
    show: (v) => percent(v),
    n: (d) => d.deployments,
    detail: (d) => `${d.failed} of ${count(d.deployments, 'deploy')} failed`,
    better: 'lower',
    delta: (a, b) => `${sign(a - b)}${number(Math.abs(a - b) * 100, 1)} points`,
  },
  {
    key: 'time_to_restore',
    value: (d) => d.median_seconds,
    show: (v) => [duration(v), ' ', h('span', { class: 'unit' }, 'median')],
    n: (d) => d.incidents,
    detail: (d) => count(d.incidents, 'incident'),
    better: 'lower',
    delta: (a, b) => `${sign(a - b)}${duration(Math.abs(a - b))}`,
  },
  {
    key: 'failed_deployment_recovery_time',
    value: (d) => d.median_seconds,
    show: (v) => [duration(v), ' ', h('span', { class: 'unit' }, 'median')],
    n: (d) => d.failures,
    detail: (d) => count(d.failures, 'failed deploy'),
    better: 'lower',
    delta: (a, b) => `${sign(a - b)}${duration(Math.abs(a - b))}`,
  },
  {
    key: 'deployment_rework_rate',
    value: (d) => d.ratio,
    show: (v) => percent(v),
    n: (d) => d.deployments,
    detail: (d) => `${d.rework} of ${count(d.deployments, 'deploy')} were rework`,
    better: 'lower',
    delta: (a, b) => `${sign(a - b)}${number(Math.abs(a - b) * 100, 1)} points`,
  },
];

function sign(x) {
  return x > 0 ? '+' : x < 0 ? '−' : '±';
}

function plain(text) {
  return String(text).replaceAll('`', '');
}

function comparison(tile, now, before, days) {
  const period = `the previous ${number(days, 1)} days`;
  const a = tile.value(now);
  const b = before ? tile.value(before) : null;
  if (b == null) return h('p', { class: 'delta', dataset: { trend: 'unknown' } }, `nothing to compare with in ${period}`);
  if (a == null) return h('p', { class: 'delta', dataset: { trend: 'unknown' } }, 'none now; ', tile.show(b), ` in ${period}`);
  if (a === b) return h('p', { class: 'delta', dataset: { trend: 'same' } }, `same as ${period}`);
  const up = a > b;
  const good = tile.better === 'higher' ? up : !up;
  return h('p', { class: `delta ${good ? 'better' : 'worse'}`, dataset: { trend: good ? 'better' : 'worse' } },
    h('span', { 'aria-hidden': 'true' }, up ? '▲ ' : '▼ '),
    `${tile.delta(a, b)} vs ${period} · ${good ? 'better' : 'worse'}`);
}

/** The count of a tile's drawer rows, as `/api/v1/dora` says it. */
const ROWS = {
  deployment_frequency: (d) => d.deployments,
  lead_time_for_changes: (d) => d.changes,
  change_failure_rate: (d) => d.failed,
  time_to_restore: (d) => d.incidents,
  failed_deployment_recovery_time: (d) => d.failures,
  deployment_rework_rate: (d) => d.rework,
};

function tileOf(tile, now, before, definitions, days, charts, drill) {
  const data = now[tile.key];
  const def = definitions.dora[tile.key];
  const value = tile.value(data);
  const level = data.level || null;
  const hover = `${def.definition}\nBands: ${plain(def.bands)}.`;
  const key = drawerOf(tile.key);
  const rows = ROWS[tile.key](data);
  const link = navLink(drill(key), `${count(rows, ...DRAWERS[key].rows)} →`);
  link.className = 'drill';
  return h('article', {
    class: `tile level-${level || 'unrated'}`,
    tabindex: 0,
    title: hover,
    'aria-label': `${def.title}`,
    dataset: { key: tile.key, value: value == null ? 'null' : String(value), n: String(tile.n(data)), rows: String(rows), level: level || 'unrated' },
    // The whole tile opens its drawer; the link inside is the keyboard's way.
    onclick: (event) => { if (!event.target.closest('a')) link.click(); },
    onkeydown: (event) => { if (event.key === 'Enter' && event.target === event.currentTarget) link.click(); },
  },
  h('h3', null, def.title),
  h('p', { class: 'value' }, tile.show(value)),
  h('p', { class: 'level' }, level
    ? h('span', { class: 'pill' }, level === 'none' ? 'level: none' : `level: ${level}`)
    : h('span', { class: 'pill' }, 'no level (a ratio)')),
  h('p', { class: 'n' }, tile.detail(data)),
  comparison(tile, data, before ? before[tile.key] : null, days),
  trend(tile, now, charts),
  h('p', { class: 'rows' }, link),
  h('div', { class: 'definition', role: 'note' }, h('p', null, def.definition), h('p', null, `Bands: ${plain(def.bands)}.`)));
}

const LEVEL_COLOURS = { elite: '#1b7a3d', high: '#2e6fa8', medium: '#8a5a00', low: '#b3261e', none: '#5b6675' };

/** The tile's value per bucket as a sparkline, described in words for screen readers. */
function trend(tile, now, charts) {
  const series = now.series || [];
  if (series.length < 2) return null;
  const xs = series.map((b) => millis(b.start) / 1000);
  const ys = series.map((b) => tile.value(b[tile.key]));
  const words = series.map((b, i) => (ys[i] == null ? 'none' : tile.show(ys[i]))).map((v) => (Array.isArray(v) ? v[0] : v));
  const el = h('div', { class: 'spark', role: 'img', 'aria-label': `per ${now.bucket}: ${words.join(', ')}`, dataset: { points: String(series.length) } });
  const colour = LEVEL_COLOURS[now[tile.key].level] || '#2456c9';
  charts.push(() => sparkline(el, xs, ys, colour));
  return el;
}

/** Deploys per bucket, and the lead time's median and p90 per bucket. */
function trends(now, charts, bucket, here, drill, navigate) {
  const series = now.series || [];
  if (!series.length) return null;
  const xs = series.map((b) => millis(b.start) / 1000);
  const deploysEl = h('div', { class: 'chart', role: 'img', 'aria-label': `deploys per ${bucket}: ` + series.map((b) => `${b.change_failure_rate.deployments} (${b.failed_deployment_recovery_time.failures} failed)`).join(', ') });
  const leadEl = h('div', { class: 'chart', role: 'img', 'aria-label': `lead time per ${bucket}: ` + series.map((b) => duration(b.lead_time_for_changes.median_seconds)).join(', ') });
  // A bar opens that bucket's deploys, a point that bucket's changes.
  const pick = (key) => (index) => navigate(drill(key, series[index].start));
  charts.push(() => bars(deploysEl, xs, [
    { label: 'deploys that ended', values: series.map((b) => b.change_failure_rate.deployments), color: '#c0392b' },
    { label: 'successful', values: series.map((b) => b.deployment_frequency.deployments), color: '#3f9b5a' },
    // Deploy days a week, for weeks and months (a day has 0 or 7).
    ...(bucket === 'day' ? [] : [{ label: 'deploy days a week', values: series.map((b) => b.deployment_frequency.deployment_days_per_week), color: '#16213a', line: true, dash: [4, 3] }]),
  ], { onPick: pick('deployments') }));
  charts.push(() => durations(leadEl, xs, [
    { label: 'median', values: series.map((b) => b.lead_time_for_changes.median_seconds), color: '#2456c9' },
    { label: 'p90', values: series.map((b) => b.lead_time_for_changes.p90_seconds), color: '#7b61c4', dash: [6, 4] },
  ], { onPick: pick('changes') }));
  const withDeploys = series.filter((b) => b.change_failure_rate.deployments > 0);
  const failureEl = h('div', { class: 'chart', role: 'img', 'aria-label': `change failure rate per ${bucket}: ` + series.map((b) => `${b.change_failure_rate.failed} of ${b.change_failure_rate.deployments}`).join(', ') });
  charts.push(() => bars(failureEl, xs, [
    { label: 'failed, % of deploys', values: series.map((b) => (b.change_failure_rate.ratio == null ? null : b.change_failure_rate.ratio * 100)), color: '#c0392b' },
  ], { onPick: pick('failed'), percent: true }));
  const restoreEl = h('div', { class: 'chart', role: 'img', 'aria-label': `time to restore per ${bucket}: ` + series.map((b) => duration(b.time_to_restore.median_seconds)).join(', ') });
  charts.push(() => durations(restoreEl, xs, [
    { label: 'time to restore (median)', values: series.map((b) => b.time_to_restore.median_seconds), color: '#d08a1c' },
    { label: 'failed deployment recovery (median)', values: series.map((b) => b.failed_deployment_recovery_time.median_seconds), color: '#7b61c4', dash: [6, 4] },
  ], { onPick: pick('incidents'), log: true }));
  const picker = h('p', { class: 'group-by' }, 'per ', BUCKETS.map((b) => (b === bucket
    ? h('strong', { 'aria-current': 'true' }, b)
    : navLink(here(b), b))));
  return h('div', { class: 'charts' },
    h('section', { class: 'panel', 'aria-labelledby': 'deploys-title' },
      h('h2', { id: 'deploys-title' }, `Production deploys per ${bucket}`), picker,
      h('p', { class: 'note' }, 'Red: deploys that ended (success or failure); green over it: the successful ones, so the red above green is the failures.', bucket === 'day' ? '' : ' The dashed line: on how many days a week a successful deploy ended.', ' Click a bar for its deploys.'),
      deploysEl),
    h('section', { class: 'panel', 'aria-labelledby': 'lead-title' },
      h('h2', { id: 'lead-title' }, `Lead time for changes per ${bucket}`),
      h('p', { class: 'note' }, 'Median and p90 of the changes shipped by the deploys that ended in each bucket; a gap is a bucket without any. Click a point for its changes.'),
      leadEl),
    h('section', { class: 'panel', 'aria-labelledby': 'failure-title' },
      h('h2', { id: 'failure-title' }, `Change failure rate per ${bucket}`),
      h('p', { class: 'note' }, `Failed (or incident-causing) deploys as a share of the deploys that ended in each bucket${withDeploys.length ? ': ' : ''}${withDeploys.map((b) => `${tick(millis(b.start), false)} ${b.change_failure_rate.failed} of ${b.change_failure_rate.deployments}`).join(' · ')}. Click a bar for its failed deploys.`),
      failureEl),
    h('section', { class: 'panel', 'aria-labelledby': 'restore-title' },
      h('h2', { id: 'restore-title' }, `Time to restore and recovery per ${bucket}`),
      h('p', { class: 'note' }, 'Medians of the incidents that closed, and of the failed deploys, in each bucket, on a log scale; a gap is a bucket without any. Click a point for its incidents.'),
      restoreEl));
}

const STAGES = ['coding', 'pickup', 'review', 'deploy'];

function breakdown(lead, definitions) {
  const parts = lead.breakdown || {};
  const known = STAGES.filter((s) => parts[s] != null);
  const bar = h('div', { class: 'stack', role: 'img', 'aria-label': STAGES.map((s) => `${s} ${duration(parts[s])}`).join(', ') },
    known.map((stage) => h('div', {
      class: `segment stage-${stage}`,
      style: { flexGrow: String(Math.max(parts[stage], 1)) },
      title: `${stage}: ${duration(parts[stage])} (median, ${definitions.breakdown[stage]})`,
    }, h('span', null, stage))));
  const legend = h('dl', { class: 'stages' }, STAGES.map((stage) => h('div', { class: `stage stage-${stage}`, dataset: { stage, value: parts[stage] == null ? 'null' : String(parts[stage]) } },
    h('dt', null, stage),
    h('dd', null, duration(parts[stage])),
    h('dd', { class: 'what' }, definitions.breakdown[stage] + (parts[stage] == null && stage === 'coding' ? ' (needs pushes to pull request branches)' : '')))));
  return h('section', { class: 'panel breakdown', 'aria-labelledby': 'breakdown-title' },
    h('h2', { id: 'breakdown-title' }, 'Lead time, stage by stage'),
    h('p', { class: 'note' }, `Medians of each stage over ${count(lead.changes, 'change')} (so they need not add up to the median lead time, ${duration(lead.median_seconds)}; p90 ${duration(lead.p90_seconds)}).`),
    known.length ? bar : empty('No change that came through a pull request reached production in this window.'),
    legend);
}

/** A source is silent when nothing came from it for this long. */
const SILENT_AFTER_MS = 24 * 3600 * 1000;

function coverage(dora, seen, drill) {
  const notes = [];
  const unattributed = dora.time_to_restore.unattributed_incidents;
  if (unattributed > 0) {
    notes.push(h('p', { class: 'coverage', role: 'status', dataset: { unattributed: String(unattributed) } },
      `${count(unattributed, 'incident')} closed in this window ${unattributed === 1 ? 'is' : 'are'} attributed to no deploy (no production deploy of ${unattributed === 1 ? 'its' : 'their'} repository before ${unattributed === 1 ? 'it' : 'them'}, and no root cause line naming one): ${unattributed === 1 ? 'it counts' : 'they count'} in time to restore but in no change failure. `,
      navLink(drill('time_to_restore'), 'See the incidents →')));
  }
  const silent = Object.entries(seen.last_delivery)
    .filter(([, at]) => Date.now() - millis(at) > SILENT_AFTER_MS)
    .map(([source, at]) => `${source} (last delivery ${relative(at)}, ${utc(millis(at))})`);
  if (silent.length) {
    notes.push(h('p', { class: 'coverage', role: 'status' },
      `No delivery for over a day from ${silent.join(', ')}: check that its webhooks still point here.`));
  }
  if (seen.waiting_references > 0) {
    const one = seen.waiting_references === 1;
    notes.push(h('p', { class: 'coverage', role: 'status' },
      `${count(seen.waiting_references, 'span names a parent', 'spans name a parent')} ValueStream has not received (a trace reference, a branch or a sha): `,
      one ? 'it joins that trace when its webhook arrives.' : 'each joins its trace when that webhook arrives.'));
  }
  const main = mainCoverage(dora, drill);
  return main || notes.length ? h('div', { class: 'coverage-notes' }, main, ...notes) : null;
}

function mainCoverage(dora, drill) {
  if (dora.change_failure_rate.deployments === 0 && dora.time_to_restore.incidents === 0) {
    return h('p', { class: 'coverage', role: 'status' },
      `Nothing to measure in this window yet: no ${dora.environment} deploy ended and no incident closed. `,
      'Point your GitHub, GitLab, Jenkins or Jira webhooks at ', h('code', null, `${location.origin}/webhooks/{source}`),
      '; a deploy counts when its environment is one of the production names. Distributions and Traces show everything else already received.');
  }
  const unmatched = dora.lead_time_for_changes.unmatched_deploys;
  if (!unmatched) return null;
  return h('p', { class: 'coverage', role: 'status' },
    `${count(unmatched, 'successful production deploy')} of a commit no push or merged pull request recorded: their changes have no lead time. Send push and pull request webhooks from the repositories they deploy. `,
    navLink(drill('deployment_frequency'), 'See the deploys →'));
}

/** Rows of the recent production deploys panel. */
const RECENT = 10;

/**
 * The newest production deploys of the window, successful and failed: the
 * newest rows of `/dora/items?key=deployments` (with the changes each
 * shipped) and of `key=failures`, merged by time; each row opens its trace.
 */
function recent(shipped, failed, items, filters) {
  const rows = [...shipped.items, ...failed.items]
    .sort((a, b) => millis(b.time) - millis(a.time))
    .slice(0, RECENT);
  const section = h('section', { class: 'panel recent', 'aria-labelledby': 'recent-title' },
    h('h2', { id: 'recent-title' }, 'Recent production deploys'));
  if (!rows.length) {
    section.append(empty('No production deploy ended in this window.'));
    return section;
  }
  const csv = (key) => h('a', { href: `/api/v1/dora/items${query({ ...items(key), limit: null, format: 'csv' })}`, download: `valuestream-${key}.csv`, class: 'csv' }, key === 'deployments' ? 'successful (CSV)' : 'failed (CSV)');
  const body = rows.map((item) => {
    const failure = isFailure(item.outcome) || failed.items.includes(item);
    const trace = `/traces/${item.trace_id}${filterQuery(filters, { span: item.span_id })}`;
    // Flags, as text: what made this deploy count against the team.
    const flags = failure ? [] : [
      item.incident_key ? h('a', { href: `/traces${filterQuery(filters, { q: item.incident_key })}`, title: `${item.incident_key} is attributed to this deploy` }, 'incident') : null,
      item.rework ? h('span', { title: 'a revert, a hotfix, or work that follows an incident: see the rework drill-down' }, 'rework') : null,
    ].filter(Boolean);
    const lead = failure || item.median_lead_time_seconds == null ? null : item.median_lead_time_seconds;
    return h('tr', { dataset: { recent: item.span_key, medianLead: lead == null ? 'none' : String(lead), flags: flags.map((f) => f.textContent).join(' ') } },
      h('td', null, h('a', { href: trace, title: utc(millis(item.time)) }, time(item.time))),
      h('td', null, item.repo ?? h('span', { class: 'muted' }, 'none')),
      h('td', null, item.environment ?? ''),
      h('td', null, h('code', null, (item.sha || '').slice(0, 7))),
      h('td', { class: failure ? 'failure' : '' }, failure ? 'failure' : (item.outcome || 'success')),
      h('td', { class: 'num' }, failure ? '–' : item.value == null ? h('span', { class: 'muted', title: 'its sha is among no recorded commits' }, 'unknown') : String(item.value)),
      h('td', { class: 'num' }, lead == null ? '–' : duration(lead)),
      h('td', { class: 'flags' }, flags.length ? flags.flatMap((f, i) => (i ? [', ', f] : [f])) : h('span', { class: 'muted' }, 'none')));
  });
  section.append(
    h('div', { class: 'scroll' }, h('table', null,
      h('caption', null, `The ${count(rows.length, 'newest deploy')} of the window; a time opens its trace. Download: `, csv('deployments'), ', ', csv('failures')),
      h('thead', null, h('tr', null, ['ended', 'repository', 'environment', 'sha', 'outcome', 'changes shipped', 'median lead time', 'flags'].map((c, i) => h('th', { scope: 'col', class: i === 5 || i === 6 ? 'num' : null }, c)))),
      h('tbody', null, body))));
  return section;
}

export async function render({ filters, window, definitions, params, path, navigate }) {
  if (!window.valid) return empty('Pick a time range whose start is before its end.');
  const scope = { repo: filters.repo, project: filters.project, environment: filters.environment };
  const bucket = bucketOf(params, window);
  const items = (key) => ({ ...scope, key, since: window.since, until: window.until, limit: RECENT });
  const [now, before, seen, shipped, failed] = await Promise.all([
    get('/api/v1/dora', { ...scope, since: window.since, until: window.until, bucket }),
    get('/api/v1/dora', { ...scope, since: window.previous.since, until: window.previous.until }),
    meta(),
    get('/api/v1/dora/items', items('deployments')),
    get('/api/v1/dora/items', items('failures')),
  ]);
  const beforeHasData = before.change_failure_rate.deployments > 0 || before.time_to_restore.incidents > 0;
  now.bucket = bucket;
  const charts = [];
  const here = (b) => `/${filterQuery(filters, { bucket: b })}`;
  const drill = (key, at) => `/dora/${key}${filterQuery(filters, { bucket: params.get('bucket'), at })}`;
  const open = path.startsWith('/dora/') ? decodeURIComponent(path.slice('/dora/'.length)) : null;
  const panel = open && DRAWERS[open]
    ? await drawer({ key: open, at: params.get('at'), dora: now, scope, window, filters, params, definitions })
    : null;
  const page = h('div', { class: 'page delivery', dataset: { since: now.since, until: now.until, bucket } },
    h('h1', { class: 'visually-hidden' }, 'Delivery'),
    coverage(now, seen, drill),
    filters.source ? h('p', { class: 'note' }, 'The DORA keys count deploys and incidents of every source; the source filter applies to the other pages.') : null,
    h('section', { class: 'tiles', 'aria-label': `DORA keys, ${now.environment}` },
      TILES.map((tile) => tileOf(tile, now, beforeHasData ? before : null, definitions, window.days, charts, drill))),
    breakdown(now.lead_time_for_changes, definitions),
    trends(now, charts, bucket, here, drill, navigate),
    recent(shipped, failed, items, filters),
    open && !panel ? h('p', { class: 'error', role: 'alert' }, `There is no drawer “${open}”: the tiles above open theirs.`) : null,
    panel);
  page.mount = () => charts.forEach((draw) => draw());
  return page;
}
