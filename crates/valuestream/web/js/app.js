// The dashboard's frame: tabs, the filter bar and the page below them.
// Navigation is history.pushState; popstate redraws, so reload and back work.

import { h, fill, problem } from './dom.js';
import { filtersOf, filterQuery, renderFilters, windowOf } from './filters.js';
import * as delivery from './delivery.js';
import * as kinds from './kinds.js';
import * as open from './open.js';
import * as traces from './traces.js';

const PAGES = [
  { path: '/', title: 'Delivery', page: delivery },
  { path: '/kinds', title: 'Distributions', page: kinds },
  { path: '/open', title: 'Open work', page: open },
  { path: '/traces', title: 'Traces', page: traces },
];

function pageOf(pathname) {
  if (pathname === '/' || pathname === '') return PAGES[0];
  return PAGES.find((p) => p.path !== '/' && (pathname === p.path || pathname.startsWith(p.path + '/'))) || PAGES[0];
}

let definitions = null;
async function loadDefinitions() {
  if (!definitions) {
    definitions = fetch(new URL('../definitions.json', import.meta.url)).then((r) => r.json());
  }
  return definitions;
}

/** Goes to a dashboard URL: a new history entry (or a replaced one) and a redraw. */
export function navigate(url, { replace = false } = {}) {
  const target = new URL(url, location.href);
  if (target.origin !== location.origin) {
    location.href = target.href;
    return;
  }
  if (replace) history.replaceState(null, '', target.pathname + target.search + target.hash);
  else history.pushState(null, '', target.pathname + target.search + target.hash);
  render();
}

let generation = 0;

async function render() {
  const run = ++generation;
  const current = pageOf(location.pathname);
  const filters = filtersOf(location.search);
  const timeWindow = windowOf(filters);
  const query = filterQuery(filters);

  fill(document.querySelector('nav.tabs'), PAGES.map((p) => h('a', {
    href: p.path + query,
    'data-nav': true,
    'aria-current': p === current ? 'page' : null,
  }, p.title)));
  document.title = `${current.title} · ValueStream`;

  renderFilters(document.querySelector("form.filters"), filters, timeWindow, (next) => {
    const params = new URLSearchParams(location.search);
    for (const name of ['since', 'until', 'repo', 'project', 'environment', 'source']) {
      if (next[name]) params.set(name, next[name]); else params.delete(name);
    }
    const text = params.toString();
    navigate(location.pathname + (text ? `?${text}` : ''));
  });

  const main = document.getElementById('main');
  main.setAttribute('aria-busy', 'true');
  try {
    const context = {
      filters,
      window: timeWindow,
      params: new URLSearchParams(location.search),
      path: location.pathname,
      definitions: await loadDefinitions(),
      navigate,
      stale: () => run !== generation,
    };
    const content = await current.page.render(context);
    if (run !== generation) return;
    fill(main, content);
    // Charts need their place in the page (a width) before they draw.
    if (content && typeof content.mount === 'function') content.mount();
  } catch (error) {
    if (run !== generation) return;
    console.warn(error);
    fill(main, problem(error));
  } finally {
    if (run === generation) {
      main.setAttribute('aria-busy', 'false');
      document.body.dataset.ready = 'true';
      // How many views were drawn: a test driving the browser waits on it.
      document.body.dataset.renders = String(Number(document.body.dataset.renders || 0) + 1);
    }
  }
}

// Links inside the dashboard move through history instead of loading a page.
document.addEventListener('click', (event) => {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest('a[data-nav]');
  if (!link || link.target) return;
  event.preventDefault();
  navigate(link.href);
});

window.addEventListener('popstate', render);
render();
