// The waterfall's time axis: a time of the trace → a position in the lane
// (0–100 %). Delivery traces last days and sit idle most of them (a review
// waits over a weekend, a deploy waits for a release), so long stretches in
// which nothing happens (no span starts or ends, no review comes) are compressed to a narrow band labelled
// `⋯ 3d idle`; bars crossing one keep their true durations in their labels.

import { h } from './dom.js';
import { duration, tick, utc } from './format.js';

/** A stretch is idle when longer than this share of the view, and than an hour. */
const IDLE_SHARE = 0.1;
const IDLE_MIN_MS = 3600 * 1000;
/** The most stretches compressed (the longest), and the lane each takes, %. */
const MOST_GAPS = 6;
export const GAP_WIDTH = 4;

/**
 * The axis of `[t0, t1]` given the times something happened (`events`, ms):
 * `{ t0, t1, x(ms) → %, gaps: [{ start, end, left, width }] }`. Without
 * `compress`, time is linear.
 */
export function timeline(events, t0, t1, compress) {
  const total = Math.max(t1 - t0, 1);
  const times = [...new Set(events.filter((t) => t >= t0 && t <= t1).concat([t0, t1]))].sort((a, b) => a - b);
  let gaps = [];
  if (compress) {
    for (let i = 1; i < times.length; i += 1) {
      if (times[i] - times[i - 1] > Math.max(total * IDLE_SHARE, IDLE_MIN_MS)) gaps.push({ start: times[i - 1], end: times[i] });
    }
    gaps = gaps.sort((a, b) => (b.end - b.start) - (a.end - a.start)).slice(0, MOST_GAPS).sort((a, b) => a.start - b.start);
  }
  const idle = gaps.reduce((sum, g) => sum + (g.end - g.start), 0);
  const kept = Math.max(total - idle, 1);
  const share = 100 - gaps.length * GAP_WIDTH;
  const x = (t) => {
    let at = 0;
    let from = t0;
    for (const gap of gaps) {
      if (t <= gap.start) break;
      const before = ((gap.start - from) / kept) * share;
      if (t < gap.end) return at + before + ((t - gap.start) / (gap.end - gap.start)) * GAP_WIDTH;
      at += before + GAP_WIDTH;
      from = gap.end;
    }
    return at + ((t - from) / kept) * share;
  };
  return { t0, t1, x, gaps: gaps.map((g) => ({ ...g, left: x(g.start), width: GAP_WIDTH })), kept };
}

const STEPS = [3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400].map((s) => s * 1000);

/** The ruler: dates (or hours) on local midnights or hours, and each idle stretch's label. */
export function ruler(axis) {
  const { t0, t1, x, gaps, kept } = axis;
  const most = globalThis.innerWidth && globalThis.innerWidth < 600 ? 3 : 6;
  const step = STEPS.find((s) => kept / s <= most) || STEPS[STEPS.length - 1];
  const withHour = step < 86400000;
  const first = new Date(t0);
  if (withHour) first.setMinutes(0, 0, 0); else first.setHours(0, 0, 0, 0);
  // Where activity starts again after an idle stretch is labelled first,
  // then the regular steps where there is room (a label needs room on its
  // right: none in the last tenth, none crowding another).
  const wanted = [t0, ...gaps.map((g) => g.end)];
  for (let t = first.getTime(); t <= t1; t += step) if (t > t0 && !gaps.some((g) => t > g.start && t < g.end)) wanted.push(t);
  // A date with its hour is about twice as wide as a date.
  const hourly = (t) => withHour || gaps.some((g) => g.end === t);
  const room = (t) => (hourly(t) ? 20 : 11) * (most === 3 ? 2 : 1);
  const placed = [];
  for (const t of wanted) {
    const pos = x(t);
    const crowded = placed.some((p) => (p.pos < pos ? pos - p.pos < room(p.t) : p.pos - pos < room(t)));
    if (pos > 90 || crowded) continue;
    placed.push({ t, pos });
  }
  const ticks = placed.sort((a, b) => a.t - b.t).map(({ t, pos }) =>
    h('span', { class: 'tick', style: { left: `${pos}%` }, title: utc(t) }, tick(t, hourly(t))));
  const idle = gaps.map((g) => h('span', {
    class: 'idle-label',
    dataset: { idle: String(Math.round((g.end - g.start) / 1000)) },
    style: { left: `${g.left + g.width / 2}%` },
    title: `${utc(g.start)} → ${utc(g.end)}: nothing happened (no span started or ended, no review came), drawn narrow`,
  }, `⋯ ${duration((g.end - g.start) / 1000)} idle`));
  return h('div', { class: `row ruler ${gaps.length ? 'has-idle' : ''}`, 'aria-hidden': 'true' },
    h('div', { class: 'label' }, h('span', { title: utc(t0) }, 'span'), ' '),
    h('div', { class: 'lane' }, ticks, idle));
}

/** The idle bands of one lane. */
export function idleBands(axis) {
  return axis.gaps.map((g) => h('div', { class: 'idle', style: { left: `${g.left}%`, width: `${g.width}%` } }));
}
