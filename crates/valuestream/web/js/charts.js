// Charts drawn with the vendored uPlot (web/vendor/uplot, MIT). Each takes
// the API's numbers as they are; x is the bucket's start, in the viewer's
// zone. A chart is drawn once its element is in the page (it needs a width).

import { duration } from './format.js';

const Plot = () => globalThis.uPlot;

function width(el, fallback) {
  return Math.max(120, Math.floor(el.clientWidth || fallback));
}

/** A small line of one value per bucket, without axes (a tile's trend). */
export function sparkline(el, xs, ys, color) {
  if (!Plot() || xs.length < 2) return null;
  return new (Plot())({
    width: width(el, 240),
    height: 36,
    legend: { show: false },
    cursor: { show: false },
    select: { show: false },
    axes: [{ show: false }, { show: false }],
    // Room above and below, so a point on the edge shows whole.
    scales: { x: { time: true }, y: { range: (u, min, max) => { const hi = max || 1; return [Math.min(0, min ?? 0) - hi * 0.15, hi * 1.15]; } } },
    series: [{}, { stroke: color, width: 1.5, fill: `${color}22`, points: { show: true, size: 4, fill: color } }],
  }, [xs, ys], el);
}

/**
 * Bars per bucket, one series per `{label, values, color}`, drawn in order
 * over each other: a later series covers the bottom of an earlier one (all
 * deploys in red, the successful ones over them in green).
 */
export function bars(el, xs, series, { height = 200, onPick, percent = false } = {}) {
  // Bars per `{label, values, color}`; `{line: true}` makes a series a line.
  if (!Plot() || !xs.length) return null;
  const paths = Plot().paths.bars({ size: [0.6, 48] });
  const top = (max) => (percent ? 100 : Math.max(1, max ?? 1) * 1.15);
  return new (Plot())({
    width: width(el, 600),
    height,
    hooks: picking(onPick),
    scales: { x: { time: true, range: (u, min, max) => pad(xs, min, max) }, y: { range: (u, min, max) => [0, top(max)] } },
    axes: [{}, { values: (u, ticks) => ticks.map((t) => (Number.isInteger(t) ? `${t}${percent ? ' %' : ''}` : '')) }],
    series: [{ value: (u, v) => (v == null ? '' : new Date(v * 1000).toLocaleDateString()) },
      // A series with `line` is drawn as a line over the bars.
      ...series.map((s) => (s.line
        ? { label: s.label, stroke: s.color, width: 2, dash: s.dash, points: { show: true, size: 5, fill: s.color } }
        : { label: s.label, stroke: s.color, fill: s.color, width: 0, paths, points: { show: false } }))],
  }, [xs, ...series.map((s) => s.values)], el);
}

/** Lines of durations (seconds) per bucket, one per `{label, values, color}`; nulls are gaps. */
export function durations(el, xs, series, { height = 200, onPick, log = false } = {}) {
  if (!Plot() || !xs.length) return null;
  // A log axis needs a positive value to range over.
  const logarithmic = log && series.some((s) => s.values.some((v) => v != null && v > 0));
  return new (Plot())({
    width: width(el, 600),
    height,
    hooks: picking(onPick),
    scales: {
      x: { time: true, range: (u, min, max) => pad(xs, min, max) },
      y: logarithmic ? { distr: 3, log: 10 } : { range: (u, min, max) => [0, Math.max(60, max ?? 60) * 1.15] },
    },
    axes: [{}, { size: 84, values: (u, ticks) => ticks.map((t) => (t == null ? '' : duration(t))) }],
    series: [{ value: (u, v) => (v == null ? '' : new Date(v * 1000).toLocaleDateString()) },
      ...series.map((s) => ({
        label: s.label,
        stroke: s.color,
        width: 2,
        dash: s.dash,
        value: (u, v) => (v == null ? '–' : duration(v)),
        points: { show: true, size: 6, fill: s.color },
      }))],
  }, [xs, ...series.map((s) => s.values)], el);
}

/** Lines of counts per bucket, one per `{label, values, color}` (work in progress). */
export function counts(el, xs, series, { height = 200 } = {}) {
  if (!Plot() || !xs.length) return null;
  return new (Plot())({
    width: width(el, 600),
    height,
    scales: { x: { time: true, range: (u, min, max) => pad(xs, min, max) }, y: { range: (u, min, max) => [0, Math.max(1, max ?? 1) * 1.15] } },
    axes: [{}, { values: (u, ticks) => ticks.map((t) => (Number.isInteger(t) ? String(t) : '')) }],
    series: [{ value: (u, v) => (v == null ? '' : new Date(v * 1000).toLocaleDateString()) },
      ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, points: { show: true, size: 5, fill: s.color } }))],
  }, [xs, ...series.map((s) => s.values)], el);
}

/**
 * Points of durations (seconds, log axis) by time, one series per
 * `{label, values, color}` (null where a point is another series').
 */
export function scatter(el, xs, series, { height = 240, onPick } = {}) {
  if (!Plot() || !xs.length) return null;
  return new (Plot())({
    width: width(el, 600),
    height,
    hooks: picking(onPick),
    cursor: { points: { size: 10 } },
    // Room either side (a twentieth of the span, at least an hour), so the
    // first and last points show whole.
    scales: {
      x: { time: true, range: (u, min, max) => { const room = Math.max(3600, ((max ?? 0) - (min ?? 0)) / 20); return [(min ?? 0) - room, (max ?? 0) + room]; } },
      y: { distr: 3, log: 10 },
    },
    axes: [{}, { size: 84, values: (u, ticks) => ticks.map((t) => (t == null ? '' : duration(t))) }],
    series: [{ value: (u, v) => (v == null ? '' : new Date(v * 1000).toLocaleString()) },
      ...series.map((s) => ({
        label: s.label,
        stroke: s.color,
        width: 0,
        paths: () => null,
        value: (u, v) => (v == null ? '–' : duration(v)),
        points: { show: true, size: 7, fill: s.color },
      }))],
  }, [xs, ...series.map((s) => s.values)], el);
}

/** uPlot hooks that call `onPick(index)` with the bucket under a click. */
function picking(onPick) {
  if (!onPick) return {};
  return {
    ready: [(u) => {
      u.over.style.cursor = 'pointer';
      u.over.addEventListener('click', () => { if (u.cursor.idx != null) onPick(u.cursor.idx); });
    }],
  };
}

// Half a bucket of room either side, so the first and last bars show whole.
function pad(xs, min, max) {
  const step = xs.length > 1 ? xs[1] - xs[0] : 86400;
  return [(min ?? xs[0]) - step / 2, (max ?? xs[xs.length - 1]) + step / 2];
}
