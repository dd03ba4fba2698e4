// backfilld's dashboard: plain JavaScript over the server's own HTTP API (/api), no build
// step, nothing fetched from another origin. Views are hash routes, so a URL can be shared
// and reloaded: #/ (backfills; ?pipeline=P&cursor=C) and #/backfills/ID.
'use strict';

const PAGE = 25;
const STATUSES = ['completed', 'failed', 'running', 'initial', 'cancelled'];
const LIVE_MS = 3000;

// Credentials live for this tab only (sessionStorage), never in a URL.
const creds = {
  get key() { return sessionStorage.getItem('backfilld.key') || ''; },
  get token() { return sessionStorage.getItem('backfilld.token') || ''; },
  set(key, token) { sessionStorage.setItem('backfilld.key', key); sessionStorage.setItem('backfilld.token', token); },
  clear() { sessionStorage.removeItem('backfilld.key'); sessionStorage.removeItem('backfilld.token'); },
};

class ApiError extends Error {
  constructor(kind, message, status, body) { super(message); this.kind = kind; this.status = status; this.body = body; }
}

async function api(path, method = 'GET', body) {
  const headers = { Accept: 'application/json' };
  if (creds.key) headers['X-API-KEY'] = creds.key;
  if (creds.token) headers['OAUTH-TOKEN'] = creds.token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError('unreachable', 'The server did not answer. Is backfilld still running at ' + location.origin + '?');
  }
  const data = await resp.json().catch(() => null);
  if (!resp.ok) {
    const message = (data && data.error && data.error.message) || resp.statusText || ('HTTP ' + resp.status);
    throw new ApiError(resp.status === 401 || resp.status === 403 ? 'auth' : 'api', message, resp.status, data);
  }
  return data;
}

// Builds an element: el('a', {href: '#/'}, 'text', child...). Text is always text, never HTML.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const app = () => document.getElementById('app');
function show(...nodes) { app().replaceChildren(...nodes); }

function route() {
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, query] = hash.split('?');
  return { path, params: new URLSearchParams(query || '') };
}

// The API's datetimes are UTC and say so ("2023-03-01 00:00:00+00:00"); shown with the
// offset kept, without microseconds, and without seconds when they are zero.
function when(s) { return s ? s.replace(/\.\d+(?=[+-]\d\d:\d\d$)/, '').replace(/(\d\d:\d\d):00(?=[+-])/, '$1') : '—'; }

function statusBadge(status) {
  return el('span', { class: 'status ' + (status || 'none') }, status || 'not started');
}

function countsBar(counts, total) {
  const bar = el('div', { class: 'bar', role: 'img' });
  const parts = [];
  for (const s of STATUSES) {
    const n = (counts && counts[s]) || 0;
    if (!n) continue;
    parts.push(n + ' ' + s);
    bar.append(el('span', { class: s, style: 'width:' + (total ? (100 * n / total) : 0) + '%' }));
  }
  bar.setAttribute('aria-label', parts.length ? parts.join(', ') + ' of ' + total : 'no runs yet');
  return el('div', {}, bar, el('div', { class: 'counts' }, parts.length ? parts.join(' · ') : 'no runs yet'));
}

function interval(b) {
  if (!b.interval_type) return '—';
  return 'every ' + (b.interval_units || 1) + ' ' + b.interval_type + ((b.interval_units || 1) === 1 ? '' : 's');
}

function problem(e) {
  if (e.kind === 'auth') return credentialsForm(e.message);
  return el('div', { class: 'problem', role: 'alert' }, el('strong', {}, e.kind === 'unreachable' ? 'No answer. ' : 'The server refused: '), e.message);
}

function credentialsForm(message) {
  const key = el('input', { id: 'api-key', name: 'api-key', autocomplete: 'off', required: true });
  const token = el('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true });
  const form = el('form', { class: 'credentials', onsubmit: (ev) => { ev.preventDefault(); creds.set(key.value.trim(), token.value.trim()); render(); } },
    el('h1', {}, 'Credentials needed'),
    el('p', { class: 'problem', role: 'alert' }, creds.key ? 'The server refused these credentials: ' + message : 'This server requires an API key and a token: ' + message),
    el('div', { class: 'toolbar' },
      el('label', { for: 'api-key' }, 'API key', key),
      el('label', { for: 'token' }, 'OAuth token', token),
      el('button', { type: 'submit' }, 'Use for this tab')),
    el('p', { class: 'note' }, 'They are kept for this tab only and never put in a URL. `backfilld token create --name NAME` makes a token.'));
  return form;
}

// --- Backfills -------------------------------------------------------------------------

async function listBackfills(params, quiet) {
  const pipeline = params.get('pipeline') || '';
  const cursor = params.get('cursor') || '';
  const base = pipeline ? '/api/pipelines/' + encodeURIComponent(pipeline) + '/backfills' : '/api/backfills';
  const query = new URLSearchParams({ include_run_count: 'true', _limit: String(PAGE) });
  if (cursor) query.set('_cursor', cursor);
  let data;
  try {
    data = await api(base + '?' + query);
  } catch (e) {
    if (!quiet) show(el('h1', {}, 'Backfills'), problem(e));
    return;
  }
  const filter = el('input', { id: 'pipeline', name: 'pipeline', value: pipeline, placeholder: 'any pipeline' });
  const toolbar = el('form', { class: 'toolbar', role: 'search', onsubmit: (ev) => {
    ev.preventDefault();
    const p = filter.value.trim();
    location.hash = '#/' + (p ? '?pipeline=' + encodeURIComponent(p) : '');
  } }, el('label', { for: 'pipeline' }, 'Pipeline', filter), el('button', { type: 'submit' }, 'Filter'),
    pipeline ? el('a', { href: '#/' }, 'All pipelines') : null);
  const rows = data.backfills;
  let body;
  if (!rows.length && !cursor) {
    body = el('div', { class: 'problem empty' }, pipeline
      ? 'Pipeline ' + pipeline + ' has no backfills.'
      : 'No backfills yet. Create one with POST /api/pipelines/PIPELINE/backfills, or run `backfilld demo` to see backfilld at work.');
  } else {
    const table = el('table', { id: 'backfills' },
      el('caption', { class: 'note' }, data.metadata.count + ' backfill' + (data.metadata.count === 1 ? '' : 's') + (pipeline ? ' in ' + pipeline : '') + ', newest first'),
      el('thead', {}, el('tr', {}, ['Status', 'Name', 'Pipeline', 'Dates', 'Interval', 'Runs', 'Total', 'Started at', 'Completed at'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows.map((b) => el('tr', { 'data-id': b.id },
        el('td', {}, statusBadge(b.status), b.is_paused ? el('span', { class: 'status' }, 'paused') : null),
        el('td', { class: 'name' }, el('a', { href: '#/backfills/' + b.id }, b.name)),
        el('td', {}, el('a', { href: '#/?pipeline=' + encodeURIComponent(b.pipeline_uuid) }, b.pipeline_uuid)),
        el('td', { class: 'dates' }, when(b.start_datetime), el('br'), '→ ' + when(b.end_datetime)),
        el('td', {}, interval(b)),
        el('td', {}, countsBar(b.run_status_counts, b.total_run_count)),
        el('td', { class: 'num total' }, String(b.total_run_count)),
        el('td', {}, when(b.started_at)),
        el('td', {}, when(b.completed_at || b.failed_at))))));
    const pager = el('nav', { class: 'pager', 'aria-label': 'pages' },
      cursor ? el('a', { href: '#/' + (pipeline ? '?pipeline=' + encodeURIComponent(pipeline) : '') }, 'First page') : null,
      data.metadata.next && data.metadata.cursor
        ? el('a', { href: '#/?' + new URLSearchParams(Object.assign(pipeline ? { pipeline } : {}, { cursor: data.metadata.cursor })), rel: 'next' }, 'Next page')
        : null);
    body = el('div', {}, el('div', { class: 'table-wrap' }, table), pager);
  }
  show(el('h1', {}, 'Backfills'), toolbar, body);
}

// --- One backfill ----------------------------------------------------------------------

async function showBackfill(id, quiet) {
  let b;
  try {
    b = (await api('/api/backfills/' + id + '?include_run_count=true')).backfill;
  } catch (e) {
    if (quiet) return;
    if (e.status === 404) {
      show(el('h1', {}, 'Backfill ' + id), el('div', { class: 'problem', role: 'alert' }, 'Backfill ' + id + ' does not exist (it may have been deleted). ', el('a', { href: '#/' }, 'Back to the backfills')));
    } else {
      show(el('h1', {}, 'Backfill ' + id), problem(e));
    }
    return;
  }
  const field = (label, value) => [el('dt', {}, label), el('dd', {}, value)];
  show(
    el('h1', {}, b.name, ' ', statusBadge(b.status), b.is_paused ? el('span', { class: 'status' }, 'paused') : null),
    countsBar(b.run_status_counts, b.total_run_count),
    el('dl', { class: 'fields' },
      field('Pipeline', el('a', { href: '#/?pipeline=' + encodeURIComponent(b.pipeline_uuid) }, b.pipeline_uuid)),
      field('Dates', [when(b.start_datetime), ' → ', when(b.end_datetime)]),
      field('Interval', interval(b)),
      field('Total runs', String(b.total_run_count)),
      field('Created at', when(b.created_at)),
      field('Started at', when(b.started_at)),
      field('Completed at', when(b.completed_at)),
      field('Failed at', when(b.failed_at)),
      field('Variables', el('pre', {}, JSON.stringify(b.variables || {}, null, 2))),
      field('Settings', el('pre', {}, JSON.stringify(b.settings || {}, null, 2)))),
    el('p', {}, el('a', { href: '#/' }, 'All backfills')));
}

// --- Routing and live updates ----------------------------------------------------------

let live = null;

async function render(quiet) {
  const { path, params } = route();
  document.getElementById('signout').hidden = !creds.key;
  const one = path.match(/^\/backfills\/(\d+)$/);
  if (path === '/' || path === '') await listBackfills(params, quiet === true);
  else if (one) await showBackfill(one[1], quiet === true);
  else show(el('div', { class: 'problem' }, 'Nothing here. ', el('a', { href: '#/' }, 'See the backfills')));
  if (quiet !== true) app().focus();
}

// While the tab is visible the view reloads itself every few seconds.
function startLive() {
  clearInterval(live);
  // Not while someone types in a field: a reload would take the text away.
  const typing = () => document.activeElement && ['INPUT', 'TEXTAREA', 'SELECT'].includes(document.activeElement.tagName);
  live = setInterval(() => { if (document.visibilityState === 'visible' && !typing()) render(true); }, LIVE_MS);
}

window.addEventListener('hashchange', () => render());
document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('signout').addEventListener('click', () => { creds.clear(); render(); });
  render();
  startLive();
});
