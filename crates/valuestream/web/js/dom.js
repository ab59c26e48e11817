// Building DOM from data: text always goes in as text, never as HTML.

/** h('a', {href: '/x', class: 'c'}, 'text', child…) → an element. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (name === 'class') el.className = value;
    else if (name === 'style') Object.assign(el.style, value);
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A link that stays inside the dashboard (history, not a page load). */
export function navLink(href, ...children) {
  return h('a', { href, 'data-nav': true }, ...children);
}

/** An absolute http(s) URL as a link that opens beside the dashboard; anything else as text. */
export function externalLink(text) {
  if (typeof text === 'string' && /^https?:\/\/[^\s]+$/.test(text)) {
    return h('a', { href: text, target: '_blank', rel: 'noopener noreferrer' }, text);
  }
  return document.createTextNode(typeof text === 'string' ? text : JSON.stringify(text));
}

/** A message in place of a panel whose data did not come. */
export function problem(error) {
  if (error && error.status === 401) {
    return h('div', { class: 'error', role: 'alert' },
      'The API asked for the token again. ', h('a', { href: location.href }, 'Reload to sign in'), '.');
  }
  return h('div', { class: 'error', role: 'alert' }, String(error && error.message || error));
}

/** A short note: what a panel is empty of. */
export function empty(text) {
  return h('p', { class: 'empty' }, text);
}
