// Formatting only: the numbers come from the API as they are.

const UNITS = [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]];

/** Seconds as two units, `2d 4h`, `5h 20m`, `42s`; `none` for null. */
export function duration(seconds) {
  if (seconds == null || Number.isNaN(seconds)) return 'none';
  const sign = seconds < 0 ? '−' : '';
  const abs = Math.abs(seconds);
  if (abs < 1) return abs === 0 ? '0s' : `${sign}${Math.round(abs * 1000)}ms`;
  let rest = Math.round(abs);
  const parts = [];
  for (const [unit, size] of UNITS) {
    const n = Math.floor(rest / size);
    if (parts.length === 0 && n === 0) continue;
    if (parts.length === 1 && n === 0) break;
    parts.push(`${n}${unit}`);
    rest -= n * size;
    if (parts.length === 2) break;
  }
  return sign + parts.join(' ');
}

/** A ratio 0…1 as a percentage, `12.5 %`; `none` for null. */
export function percent(ratio) {
  if (ratio == null) return 'none';
  const value = ratio * 100;
  return `${Number.isInteger(value) ? value : value.toFixed(1)} %`;
}

/** A number with at most `digits` decimals; `none` for null. */
export function number(value, digits = 2) {
  if (value == null) return 'none';
  if (Number.isInteger(value)) return String(value);
  return value.toFixed(digits).replace(/\.?0+$/, '') || '0';
}

/** Counts with their noun: `1 deploy`, `3 deploys`. */
export function count(n, singular, plural = singular + 's') {
  return `${n} ${n === 1 ? singular : plural}`;
}

/** Milliseconds since the epoch of an RFC 3339 time (nanoseconds cut to milliseconds). */
export function millis(iso) {
  if (iso == null) return null;
  return Date.parse(String(iso).replace(/(\.\d{3})\d+/, '$1'));
}

const LOCAL = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const LOCAL_DAY = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
const LOCAL_HOUR = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });

/** The time in UTC, for hover text. */
export function utc(ms) {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, '').replace('T', ' ') + ' UTC';
}

/** A <time> in the viewer's zone with UTC on hover. */
export function time(iso) {
  const ms = millis(iso);
  const el = document.createElement('time');
  if (ms == null || Number.isNaN(ms)) {
    el.textContent = 'none';
    return el;
  }
  el.dateTime = iso;
  el.title = utc(ms);
  el.textContent = LOCAL.format(ms);
  return el;
}

/** A short local label for a ruler tick: the day, or the day and hour. */
export function tick(ms, withHour) {
  return (withHour ? LOCAL_HOUR : LOCAL_DAY).format(ms);
}

/** `3d ago`, `in 2h` relative to `now` (ms). */
export function relative(iso, now = Date.now()) {
  const ms = millis(iso);
  if (ms == null) return '';
  const seconds = (now - ms) / 1000;
  return seconds >= 0 ? `${duration(seconds)} ago` : `in ${duration(-seconds)}`;
}

/** A kind as people say it: `pull_request` → `pull request`. */
export function kindName(kind) {
  return String(kind || '').replaceAll('_', ' ');
}

/** Outcomes drawn as failures (red, and the word itself). */
export function isFailure(outcome) {
  return ['failure', 'failed', 'error', 'timeout', 'timed_out'].includes(outcome);
}
