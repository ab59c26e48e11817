// The frame's state, all of it in the URL: the same names as the API
// (since, until, repo, project, environment, source), so a view can be
// shared, reloaded and gone back to.

import { get } from './api.js';
import { h, fill } from './dom.js';
import { utc } from './format.js';

export const FILTERS = ['since', 'until', 'repo', 'project', 'environment', 'source'];
export const RANGES = ['7d', '30d', '90d'];
export const DEFAULT_RANGE = '30d';

const DURATION = /^(\d+)([dhms])$/;
const UNIT_MS = { d: 86400000, h: 3600000, m: 60000, s: 1000 };

/** The URL's filters (only those with a value). */
export function filtersOf(search) {
  const params = new URLSearchParams(search);
  const out = {};
  for (const name of FILTERS) {
    const value = params.get(name);
    if (value) out[name] = value;
  }
  return out;
}

/** `?since=…&repo=…` of the filters, for links that keep them. */
export function filterQuery(filters, extra = {}) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries({ ...filters, ...extra })) {
    if (value != null && value !== '') params.set(name, value);
  }
  const text = params.toString();
  return text ? `?${text}` : '';
}

/** An instant as RFC 3339 to the second, in UTC (`2026-11-01T00:00:00Z`). */
export function isoSeconds(ms) {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function resolve(value, now) {
  const match = DURATION.exec(value);
  if (match) {
    const ms = now - Number(match[1]) * UNIT_MS[match[2]];
    return { iso: isoSeconds(ms), ms };
  }
  const ms = Date.parse(value);
  return { iso: value, ms };
}

/**
 * The window `[since, until)` as explicit times, resolved once per view so
 * every panel and the previous period use the same instants. A relative
 * range (`30d`) ends now, to the second; the previous period has exactly
 * the same length and ends where this one starts.
 */
export function windowOf(filters, nowMs = Date.now()) {
  const now = Math.floor(nowMs / 1000) * 1000;
  const until = filters.until ? resolve(filters.until, now) : { iso: isoSeconds(now), ms: now };
  const since = resolve(filters.since || DEFAULT_RANGE, now);
  const length = until.ms - since.ms;
  return {
    since: since.iso,
    until: until.iso,
    sinceMs: since.ms,
    untilMs: until.ms,
    days: length / 86400000,
    previous: { since: isoSeconds(since.ms - length), until: since.iso },
    valid: Number.isFinite(length) && length > 0,
  };
}

/** Which range button is on: `7d`, `30d`, `90d` or `custom`. */
export function rangeOf(filters) {
  if (!filters.since && !filters.until) return DEFAULT_RANGE;
  if (!filters.until && RANGES.includes(filters.since)) return filters.since;
  return 'custom';
}

// What the store has seen (`/api/v1/meta`): the filter menus' values and
// the coverage notes. It does not depend on the window: one call serves every
// view for a minute; a failed call is asked again at the next view.
const META_FOR_MS = 60 * 1000;
let metaCache = { at: 0, promise: null };

/** `/api/v1/meta`, at most a minute old; an empty answer when it cannot be read. */
export function meta() {
  if (!metaCache.promise || Date.now() - metaCache.at > META_FOR_MS) {
    const promise = get('/api/v1/meta').catch(() => {
      if (metaCache.promise === promise) metaCache = { at: 0, promise: null };
      return { repos: [], projects: [], environments: [], kinds: [], sources: [], last_delivery: {}, waiting_references: 0, trace_url: null };
    });
    metaCache = { at: Date.now(), promise };
  }
  return metaCache.promise;
}

const META_LISTS = { repo: 'repos', project: 'projects', environment: 'environments', source: 'sources' };

function localInput(ms) {
  if (!Number.isFinite(ms)) return '';
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}

const LABELS = { repo: 'Repository', project: 'Project', environment: 'Environment', source: 'Source' };
const ALL = { repo: 'all repositories', project: 'all projects', environment: 'default', source: 'all sources' };

// Filters that take several values, comma-separated as the API takes them.
const MULTI = ['repo', 'project'];

/** The names of a multi-value filter (`a/b,c/d`). */
export function namesOf(value) {
  return (value || '').split(',').map((v) => v.trim()).filter(Boolean);
}

/**
 * A multi-value filter: a disclosure listing the values seen, as checkboxes,
 * with a box that narrows the list; "apply" sets the filter to the checked
 * names. `offer(values)` fills the list once `/api/v1/meta` answers.
 */
function picker(name, value, apply) {
  const chosen = new Set(namesOf(value));
  const caption = () => (chosen.size === 0 ? ALL[name] : chosen.size === 1 ? [...chosen][0] : `${chosen.size} ${PLURAL[name]}`);
  const summary = h('summary', { 'aria-label': `${LABELS[name]}: ${caption()}` }, caption());
  const list = h('ul', { class: 'choices' });
  const narrow = h('input', {
    type: 'search', placeholder: `find a ${LABELS[name].toLowerCase()}`, 'aria-label': `find a ${LABELS[name].toLowerCase()}`,
    oninput: () => {
      const text = narrow.value.trim().toLowerCase();
      for (const item of list.children) item.hidden = text !== '' && !item.dataset.value.toLowerCase().includes(text);
    },
  });
  const box = (v) => h('li', { dataset: { value: v } }, h('label', null,
    h('input', { type: 'checkbox', value: v, checked: chosen.has(v), onchange: (e) => { if (e.target.checked) chosen.add(v); else chosen.delete(v); } }),
    ' ', v));
  for (const v of chosen) list.append(box(v));
  const done = h('div', { class: 'actions' },
    h('button', { type: 'button', onclick: () => apply([...chosen].join(',')) }, 'apply'),
    h('button', { type: 'button', onclick: () => apply('') }, 'all'));
  const details = h('details', { class: 'picker', dataset: { filter: name } }, summary, h('div', { class: 'menu' }, narrow, list, done));
  details.offer = (values) => {
    for (const v of values) if (!chosen.has(v)) list.append(box(v));
  };
  return h('div', { class: 'filter' }, h('span', null, LABELS[name]), details);
}

const PLURAL = { repo: 'repositories', project: 'projects' };

/** Draws the frame's filter bar into `form`; `go(filters)` applies a change. */
export function renderFilters(form, filters, win, go) {
  const range = rangeOf(filters);
  const set = (changes) => {
    const next = { ...filters, ...changes };
    for (const [name, value] of Object.entries(next)) if (value == null || value === '') delete next[name];
    go(next);
  };
  const buttons = [...RANGES, 'custom'].map((r) => h('button', {
    type: 'button',
    class: 'range',
    'aria-pressed': String(range === r),
    onclick: () => {
      if (r === 'custom') {
        set({ since: win.since, until: win.until });
      } else {
        set({ since: r === DEFAULT_RANGE ? null : r, until: null });
      }
    },
  }, r === 'custom' ? 'custom' : `last ${r}`));

  const custom = range === 'custom' ? h('span', { class: 'custom' },
    h('label', null, 'from ', h('input', { type: 'datetime-local', name: 'since', value: localInput(win.sinceMs), title: utc(win.sinceMs) })),
    h('label', null, 'to ', h('input', { type: 'datetime-local', name: 'until', value: localInput(win.untilMs), title: utc(win.untilMs) })),
    h('button', { type: 'submit' }, 'apply')) : null;

  const selects = Object.keys(LABELS).map((name) => {
    if (MULTI.includes(name)) return picker(name, filters[name], (value) => set({ [name]: value }));
    const select = h('select', { name, 'aria-label': LABELS[name], title: name === 'environment' ? 'By default the DORA keys count the production environments and the other pages every environment' : null, onchange: (e) => set({ [name]: e.target.value }) },
      h('option', { value: '' }, ALL[name]));
    if (filters[name]) select.append(h('option', { value: filters[name], selected: true }, filters[name]));
    return h('label', { class: 'filter' }, h('span', null, LABELS[name]), select);
  });

  const span = h('p', { class: 'win', title: `${utc(win.sinceMs)} → ${utc(win.untilMs)}` },
    win.valid ? `${new Date(win.sinceMs).toLocaleString()} → ${new Date(win.untilMs).toLocaleString()}` : 'since must be before until');

  fill(form, h('div', { class: 'ranges', role: 'group', 'aria-label': 'Time range' }, buttons), custom, ...selects, range === 'custom' ? null : span);
  form.onsubmit = (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const since = data.get('since');
    const until = data.get('until');
    if (since && until) set({ since: isoSeconds(new Date(since).getTime()), until: isoSeconds(new Date(until).getTime()) });
  };

  meta().then((seen) => {
    for (const name of MULTI) {
      const picked = form.querySelector(`.picker[data-filter="${name}"]`);
      if (picked) picked.offer(seen[META_LISTS[name]]);
    }
    for (const name of Object.keys(LABELS)) {
      const select = form.querySelector(`select[name="${name}"]`);
      if (!select) continue;
      for (const value of seen[META_LISTS[name]]) {
        if (value === filters[name]) continue;
        select.append(h('option', { value }, value));
      }
    }
  });
}

/** Trend granularities (`bucket=`), shortest first. */
export const BUCKETS = ['day', 'week', 'month'];

/** The bucket the URL asks for, else one that suits the window's length. */
export function bucketOf(params, window) {
  const asked = params.get('bucket');
  if (BUCKETS.includes(asked)) return asked;
  return window.days <= 14 ? 'day' : window.days <= 120 ? 'week' : 'month';
}
