// backfilld's dashboard: plain JavaScript over the server's own HTTP API (/api), no build
// step, nothing fetched from another origin. Views are hash routes, so a URL can be shared
// and reloaded: #/ (backfills; ?pipeline=P&status=S&name=N&cursor=C), #/backfills/ID,
// #/backfills/ID/edit, #/new and #/runs/ID.
'use strict';

const PAGE = 25;
const STATUSES = ['completed', 'failed', 'running', 'initial', 'cancelled'];
const LIVE_MS = 3000;
const LOG_MS = 1000;

// The API key the server gives its page (a meta tag), if any: a login needs it.
function pageKey() {
  const meta = document.querySelector('meta[name="backfilld-api-key"]');
  return meta ? meta.getAttribute('content') || '' : '';
}

// Credentials live for this tab only (sessionStorage), never in a URL. `user` is set when
// they come from a login (email or username and password), so that the page can say who is
// logged in and log out.
const creds = {
  get key() { return sessionStorage.getItem('backfilld.key') || ''; },
  get token() { return sessionStorage.getItem('backfilld.token') || ''; },
  get user() { return sessionStorage.getItem('backfilld.user') || ''; },
  set(key, token, user) {
    sessionStorage.setItem('backfilld.key', key); sessionStorage.setItem('backfilld.token', token);
    if (user) sessionStorage.setItem('backfilld.user', user); else sessionStorage.removeItem('backfilld.user');
  },
  clear() { for (const k of ['key', 'token', 'user']) sessionStorage.removeItem('backfilld.' + k); },
};

class ApiError extends Error {
  constructor(kind, message, status, body) { super(message); this.kind = kind; this.status = status; this.body = body; }
}

function headersFor(body) {
  const headers = { Accept: 'application/json' };
  if (creds.key) headers['X-API-KEY'] = creds.key;
  if (creds.token) headers['OAUTH-TOKEN'] = creds.token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  return headers;
}

// fetch, saying in the header when the server does not answer (so that a view that reloads
// itself says its data is old) and when it does.
async function call(path, init) {
  const live = document.getElementById('live');
  let resp;
  try {
    // 'no-cache': ask the server each time, naming the version held (If-None-Match); an
    // unchanged answer is then a 304 with no body, and the server skips the read.
    resp = await fetch(path, Object.assign({ cache: 'no-cache' }, init));
  } catch (e) {
    if (live && live.className !== 'stale') {
      live.textContent = 'No answer from the server since ' + clock(new Date()) + ': showing what was last seen.';
      live.className = 'stale';
      live.setAttribute('role', 'alert');
    }
    throw new ApiError('unreachable', 'The server did not answer. Is backfilld still running at ' + location.origin + '?');
  }
  if (live && resp.ok) { live.textContent = 'Updated ' + clock(new Date()); live.className = 'note'; live.removeAttribute('role'); }
  return resp;
}

async function refusal(resp) {
  const data = await resp.json().catch(() => null);
  const message = (data && data.error && data.error.message) || resp.statusText || ('HTTP ' + resp.status);
  return new ApiError(resp.status === 401 || resp.status === 403 ? 'auth' : 'api', message, resp.status, data);
}

async function api(path, method = 'GET', body) {
  const resp = await call(path, { method, headers: headersFor(body), body: body === undefined ? undefined : JSON.stringify(body) });
  if (!resp.ok) throw await refusal(resp);
  return resp.json().catch(() => null);
}

// Builds an element: el('a', {href: '#/'}, 'text', child...). Text is always text, never HTML.
function el(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

// The same for SVG's elements (the durations chart).
function svg(tag, attrs, ...children) {
  return fill(document.createElementNS('http://www.w3.org/2000/svg', tag), attrs, children);
}

function fill(node, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.setAttribute('class', v);
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
function show(...nodes) { app().replaceChildren(...nodes.filter((n) => n !== null && n !== undefined)); }

function route() {
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, query] = hash.split('?');
  return { path, params: new URLSearchParams(query || '') };
}

function clock(d) { return d.toISOString().slice(11, 19) + ' UTC'; }

// The API's datetimes are UTC and say so ("2023-03-01 00:00:00+00:00"); shown with the
// offset kept, without microseconds, and without seconds when they are zero.
function when(s) { return s ? s.replace('T', ' ').replace(/\.\d+(?=[+-]\d\d:\d\d$)/, '').replace(/(\d\d:\d\d):00(?=[+-])/, '$1') : '—'; }

function parse(s) {
  if (!s) return null;
  const t = Date.parse(s.replace(' ', 'T'));
  return Number.isNaN(t) ? null : t;
}

// A length of time as people say it: "42 s", "3 min 5 s", "2 h 10 min", "3 d 4 h".
function span(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return s + ' s';
  const m = Math.floor(s / 60);
  if (m < 60) return m + ' min' + (s % 60 ? ' ' + (s % 60) + ' s' : '');
  const h = Math.floor(m / 60);
  if (h < 48) return h + ' h' + (m % 60 ? ' ' + (m % 60) + ' min' : '');
  return Math.floor(h / 24) + ' d' + (h % 24 ? ' ' + (h % 24) + ' h' : '');
}

function ago(t, now) {
  const d = now - t;
  if (Math.abs(d) < 5000) return 'just now';
  const rough = span(Math.abs(d)).replace(/ (\d+ (s|min|h))$/, '');
  return d > 0 ? rough + ' ago' : 'in ' + rough;
}

// A time shown relative to now ("3 min ago"), its exact UTC time on hover. The text is
// brought up to date on each reload without redrawing the view (`tick`).
function relative(s) {
  const t = parse(s);
  if (t === null) return el('span', {}, '—');
  return el('time', { datetime: s, title: when(s), 'data-at': String(t) }, ago(t, Date.now()));
}

// A run's duration: started_at to completed_at, or to now while it runs (kept up to date).
function duration(r) {
  const start = parse(r.started_at);
  if (start === null) return el('span', { class: 'note' }, '—');
  const end = parse(r.completed_at);
  if (end !== null) return el('span', { class: 'duration' }, span(end - start));
  if (r.status !== 'running') return el('span', { class: 'note' }, '—');
  return el('span', { class: 'duration', 'data-since': String(start), title: 'running' }, span(Date.now() - start));
}

function tick() {
  const now = Date.now();
  for (const t of document.querySelectorAll('[data-at]')) {
    const text = ago(Number(t.getAttribute('data-at')), now);
    if (t.textContent !== text) t.textContent = text;
  }
  for (const t of document.querySelectorAll('[data-since]')) {
    const text = span(now - Number(t.getAttribute('data-since')));
    if (t.textContent !== text) t.textContent = text;
  }
}

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
    const part = el('span', { class: s });
    // Through the CSSOM: the page's Content-Security-Policy refuses style attributes.
    part.style.width = (total ? (100 * n / total) : 0) + '%';
    bar.append(part);
  }
  bar.setAttribute('aria-label', parts.length ? parts.join(', ') + ' of ' + total : 'no runs yet');
  return el('div', {}, bar, el('div', { class: 'counts' }, parts.length ? parts.join(' · ') : 'no runs yet'));
}

// The step between run dates, as people say it: "every 4 hours". A `custom` interval steps
// by interval_units seconds (the API's meaning), and says it is custom.
function interval(b) {
  if (!b.interval_type) return '—';
  const units = b.interval_units || 1;
  const custom = b.interval_type === 'custom';
  const every = 'every ' + units + ' ' + (custom ? 'second' : b.interval_type) + (units === 1 ? '' : 's');
  return custom ? 'custom, ' + every : every;
}

function problem(e) {
  if (e.kind === 'auth') return credentialsForm(e.message);
  return el('div', { class: 'problem', role: 'alert' }, el('strong', {}, e.kind === 'unreachable' ? 'No answer. ' : 'The server refused: '), e.message);
}

// --- Logging in ------------------------------------------------------------------------

// The OAuth token a login's JWT carries (its payload's `token`).
function jwtToken(jwt) {
  try {
    const payload = String(jwt).split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(payload + '==='.slice((payload.length + 3) % 4))).token || '';
  } catch (e) {
    return '';
  }
}

async function logIn(key, who, password) {
  const session = who.includes('@') ? { email: who, password } : { username: who, password };
  const headers = { Accept: 'application/json', 'Content-Type': 'application/json' };
  if (key) headers['X-API-KEY'] = key;
  const resp = await call('/api/sessions', { method: 'POST', headers, body: JSON.stringify({ session }) });
  if (!resp.ok) throw await refusal(resp);
  const data = await resp.json();
  const token = jwtToken(data.session && data.session.token);
  if (!token) throw new ApiError('api', 'the login\'s answer holds no token', resp.status, data);
  const user = data.session.user || {};
  creds.set(key, token, user.username || who);
}

async function logOut() {
  // Ends the session on the server, then forgets it here whatever the answer (an expired
  // session is over already).
  if (creds.user) { try { await api('/api/sessions/1', 'DELETE'); } catch (e) { /* forgotten below */ } }
  creds.clear();
  render();
}

// When the server refuses: a login (email or username and password, with the page's API key,
// or one typed when the server gives its page none) and, for servers without users, the API
// key and a token.
function credentialsForm(message) {
  const metaKey = pageKey();
  const refused = creds.key ? (creds.user ? 'The session ended or was refused: ' : 'The server refused these credentials: ') + message
    : 'This server requires an API key and a token, or a login: ' + message;
  const loginKey = metaKey ? null : el('input', { id: 'login-key', name: 'login-key', autocomplete: 'off', required: true });
  const who = el('input', { id: 'login-who', name: 'username', autocomplete: 'username', required: true });
  const password = el('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const loginError = el('p', { id: 'login-error', class: 'field-error', role: 'alert' });
  const loginButton = el('button', { type: 'submit' }, 'Log in');
  const login = el('form', { class: 'login', onsubmit: async (ev) => {
    ev.preventDefault();
    loginError.textContent = '';
    loginButton.disabled = true;
    try {
      await logIn(metaKey || loginKey.value.trim(), who.value.trim(), password.value);
      render();
    } catch (e) {
      loginButton.disabled = false;
      loginError.textContent = e.body && e.body.error && e.body.error.type === 'invalid_credentials'
        ? 'Wrong email, username or password. (' + e.message + ')' : 'Not logged in: ' + e.message;
    }
  } },
  el('h2', {}, 'Log in'),
  el('div', { class: 'toolbar' },
    loginKey ? el('label', { for: 'login-key' }, 'API key', loginKey) : null,
    el('label', { for: 'login-who' }, 'Email or username', who),
    el('label', { for: 'login-password' }, 'Password', password),
    loginButton),
  loginError);
  const key = el('input', { id: 'api-key', name: 'api-key', autocomplete: 'off', required: true });
  const token = el('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true });
  const other = el('form', { class: 'credentials', onsubmit: (ev) => { ev.preventDefault(); creds.set(key.value.trim(), token.value.trim()); render(); } },
    el('div', { class: 'toolbar' },
      el('label', { for: 'api-key' }, 'API key', key),
      el('label', { for: 'token' }, 'OAuth token', token),
      el('button', { type: 'submit' }, 'Use for this tab')),
    el('p', { class: 'note' }, '`backfilld token create --name NAME` makes a token.'));
  // Without a key from the server the page is likely on a server without users: the key
  // and token form comes open.
  const others = el('details', { class: 'other-credentials', open: !metaKey && creds.key && !creds.user ? true : undefined },
    el('summary', {}, 'Other credentials: an API key and a token'), other);
  return el('div', { class: 'signin' },
    el('h1', {}, 'Credentials needed'),
    el('p', { class: 'problem', role: 'alert' }, refused),
    login, others,
    el('p', { class: 'note' }, 'Credentials are kept for this tab only and never put in a URL.'));
}

function whoIsIn() {
  const who = document.getElementById('who');
  const out = document.getElementById('signout');
  who.textContent = creds.user ? 'Logged in as ' + creds.user : '';
  who.hidden = !creds.user;
  out.textContent = creds.user ? 'Log out' : 'Forget credentials';
  out.hidden = !creds.key;
}

// --- Backfills -------------------------------------------------------------------------

// The list's status filter: the API's `status=` (a comma-separated list).
const STATUS_FILTERS = [['', 'any status'], ['initial,running', 'waiting or running'], ['running', 'running'], ['failed', 'failed'],
  ['completed', 'completed'], ['cancelled', 'cancelled'], ['initial', 'waiting']];

function listHash(filters, cursor) {
  const q = new URLSearchParams();
  for (const k of ['pipeline', 'status', 'name']) if (filters[k]) q.set(k, filters[k]);
  if (cursor) q.set('cursor', cursor);
  const s = q.toString();
  return '#/' + (s ? '?' + s : '');
}

async function listBackfills(params, mode, fresh) {
  const filters = { pipeline: params.get('pipeline') || '', status: params.get('status') || '', name: params.get('name') || '' };
  const cursor = params.get('cursor') || '';
  const query = new URLSearchParams({ include_run_count: 'true', _limit: String(PAGE) });
  if (filters.pipeline) query.set('pipeline_uuid', filters.pipeline);
  if (filters.status) query.set('status', filters.status);
  if (filters.name) query.set('name_prefix', filters.name);
  if (cursor) query.set('_cursor', cursor);
  let data;
  try {
    data = await api('/api/backfills?' + query);
  } catch (e) {
    if (fresh() && !(mode === 'live' && e.kind === 'unreachable')) show(el('h1', {}, 'Backfills'), problem(e));
    return;
  }
  if (!fresh() || same(mode, data)) return;
  const name = el('input', { id: 'name', name: 'name', value: filters.name, placeholder: 'name starts with', type: 'search' });
  const pipeline = el('input', { id: 'pipeline', name: 'pipeline', value: filters.pipeline, placeholder: 'any pipeline' });
  const status = el('select', { id: 'status-filter', name: 'status' }, STATUS_FILTERS.map(([v, label]) => el('option', { value: v }, label)));
  status.value = filters.status;
  const filtered = filters.pipeline || filters.status || filters.name;
  const toolbar = el('form', { class: 'toolbar', role: 'search', onsubmit: (ev) => {
    ev.preventDefault();
    location.hash = listHash({ pipeline: pipeline.value.trim(), status: status.value, name: name.value.trim() });
  } }, el('label', { for: 'name' }, 'Name', name), el('label', { for: 'status-filter' }, 'Status', status),
  el('label', { for: 'pipeline' }, 'Pipeline', pipeline), el('button', { type: 'submit' }, 'Filter'),
  filtered ? el('a', { href: '#/' }, 'All backfills') : null);
  const rows = data.backfills;
  let body;
  if (!rows.length && !cursor) {
    body = el('div', { class: 'problem empty' }, filtered
      ? 'No backfill ' + [filters.name ? 'named "' + filters.name + '…"' : '', filters.status ? 'in status ' + filters.status.replace(',', ' or ') : '',
        filters.pipeline ? 'in pipeline ' + filters.pipeline : ''].filter(Boolean).join(', ') + '.'
      : ['No backfills yet. ', el('a', { href: '#/new' }, 'Create one'), ' (or POST /api/pipelines/PIPELINE/backfills), or run `backfilld demo` to see backfilld at work.']);
  } else {
    const described = [filters.name ? 'named "' + filters.name + '…"' : '', filters.status ? filters.status.replace(',', ' or ') : '',
      filters.pipeline ? 'in ' + filters.pipeline : ''].filter(Boolean).join(', ');
    // Five columns (what a row says is merged: the name over its pipeline, the dates over
    // their interval), so that the table fits 1,280 px; on a phone each row is a card.
    const table = el('table', { id: 'backfills' },
      el('caption', { class: 'note' }, data.metadata.count + ' backfill' + (data.metadata.count === 1 ? '' : 's') + (described ? ' ' + described : '') + ', newest first'),
      el('thead', {}, el('tr', {}, ['Status', 'Name and pipeline', 'Dates', 'Runs', 'Started and finished'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows.map((b) => el('tr', { 'data-id': b.id },
        el('td', { class: 'state' }, statusBadge(b.status), flags(b)),
        el('td', { class: 'name' }, el('a', { href: '#/backfills/' + b.id }, b.name),
          el('div', { class: 'pipeline note' }, el('a', { href: listHash({ pipeline: b.pipeline_uuid }), 'aria-label': 'pipeline ' + b.pipeline_uuid }, b.pipeline_uuid))),
        el('td', { class: 'dates' }, when(b.start_datetime), el('br'), '→ ' + when(b.end_datetime), el('div', { class: 'interval note' }, interval(b))),
        el('td', { class: 'runs' }, countsBar(b.run_status_counts, b.total_run_count),
          el('div', { class: 'counts' }, el('span', { class: 'total' }, String(b.total_run_count)), ' runs')),
        el('td', { class: 'times' }, b.started_at ? ['started ', relative(b.started_at)] : 'not started',
          (b.completed_at || b.failed_at) ? el('div', {}, b.completed_at ? 'completed ' : 'failed ', relative(b.completed_at || b.failed_at), took(b)) : null)))));
    const pager = el('nav', { class: 'pager', 'aria-label': 'pages' },
      cursor ? el('a', { href: listHash(filters) }, 'First page') : null,
      data.metadata.next && data.metadata.cursor ? el('a', { href: listHash(filters, data.metadata.cursor), rel: 'next' }, 'Next page') : null);
    body = el('div', {}, el('div', { class: 'table-wrap' }, table), pager);
  }
  show(el('h1', {}, 'Backfills'), toolbar, body);
  // When the first page of rows is on screen: the frame after they went into the page (the
  // bench reads it: examples/bench.rs).
  if (rows.length && !performance.getEntriesByName('backfills-rows').length) {
    requestAnimationFrame(() => setTimeout(() => { if (!performance.getEntriesByName('backfills-rows').length) performance.mark('backfills-rows'); }));
  }
}

// How long a finished backfill took: started_at to completed_at (or failed_at).
function took(b) {
  const start = parse(b.started_at), end = parse(b.completed_at || b.failed_at);
  const c = b.run_status_counts || {};
  return start !== null && end !== null && !((c.initial || 0) + (c.running || 0))
    ? el('span', { class: 'took note' }, ' (took ' + span(end - start) + ')') : null;
}

// --- One backfill ----------------------------------------------------------------------

const MAP_CELLS = 500;
const RUNS_PAGE = 500;

// A button that calls the API and shows its answer: a refusal in the view's message line,
// success by rendering again.
function action(label, run, opts) {
  return el('button', { type: 'button', class: (opts && opts.class) || '', onclick: async (ev) => {
    if (opts && opts.confirm && !confirm(opts.confirm)) return;
    const button = ev.currentTarget;
    button.disabled = true;
    try {
      await run();
      if (opts && opts.after) opts.after(); else render('refresh');
    } catch (e) {
      say(e.message);
      button.disabled = false;
    }
  } }, label);
}

function say(text) {
  const line = document.getElementById('message');
  if (line) { line.textContent = text; line.hidden = !text; }
}

function put(id, fields) { return api('/api/backfills/' + id, 'PUT', { backfill: fields }); }

// Run again: the cancelled dates, and by `how` the failed (or failed and completed) ones.
function runAgain(b, how) {
  return put(b.id, { status: 'initial', settings: Object.assign({}, b.settings || {}, { reprocess_behavior: how }) });
}

function retry(r) { return api('/api/pipeline_runs/' + r.id + '/retry', 'POST'); }

// Beside a backfill's status: paused, and stopped (halted at a failed date, with dates
// waiting: a halt with nothing left to hand out stops nothing).
function flags(b) {
  const waiting = !b.run_status_counts || (b.run_status_counts.initial || 0) > 0;
  return [b.is_paused ? el('span', { class: 'status' }, 'paused') : null,
    b.is_halted && waiting ? el('span', { class: 'status', title: 'stopped at a failed date: run it again or retry a date to go on' }, 'stopped') : null];
}

// What a failed backfill is still doing, so that "failed" is not taken for "stopped": its
// other dates run on unless it stops on failure (is_halted).
function failureNote(b) {
  if (b.status !== 'failed' || !b.run_status_counts) return null;
  const c = b.run_status_counts;
  const waiting = c.initial || 0, running = c.running || 0, failed = c.failed || 0;
  const dates = (n) => n + ' date' + (n === 1 ? '' : 's');
  let text = dates(failed) + ' failed. ';
  if (b.is_halted) {
    text += waiting ? 'The backfill stopped there: ' + dates(waiting) + ' wait and are not handed out until you run it again or retry a date.'
      : 'The backfill stopped there.';
  } else if (waiting + running) {
    text += 'The other dates go on: ' + running + ' running, ' + waiting + ' waiting.';
  } else {
    text += 'Every other date has finished.';
  }
  return el('p', { id: 'failure-note', class: 'note' }, text);
}

function actions(b) {
  const id = b.id;
  const buttons = [];
  const started = b.status !== null && b.status !== undefined;
  if (!started) buttons.push(action('Start', () => put(id, { status: 'initial' })));
  if (b.status === 'initial' || b.status === 'running' || b.status === 'failed') {
    buttons.push(b.is_paused ? action('Resume', () => put(id, { is_paused: false })) : action('Pause', () => put(id, { is_paused: true })));
    buttons.push(action('Cancel', () => put(id, { status: 'cancelled' }), { confirm: 'Cancel this backfill and its waiting and running runs?' }));
  }
  if (['completed', 'failed', 'cancelled', 'running'].includes(b.status)) {
    const how = el('select', { id: 'reprocess', 'aria-label': 'What to run again' },
      el('option', { value: 'none' }, 'cancelled dates'),
      el('option', { value: 'failed' }, 'failed and cancelled dates'),
      el('option', { value: 'completed' }, 'every finished date'));
    how.value = (b.settings && b.settings.reprocess_behavior) || 'failed';
    buttons.push(el('span', { class: 'again' }, how, action('Run again', () => runAgain(b, how.value))));
  }
  buttons.push(el('a', { href: '#/backfills/' + id + '/edit', class: 'button' }, 'Edit'));
  buttons.push(action('Delete', () => api('/api/backfills/' + id, 'DELETE'), {
    confirm: 'Delete backfill "' + b.name + '"? Its runs are kept.', class: 'danger', after: () => { location.hash = '#/'; },
  }));
  return el('div', { class: 'toolbar actions' }, buttons);
}

// Why a run failed, in words: its exit status or signal, a timeout, an expired lease, or the
// error its worker reported.
function whatWentWrong(r) {
  const m = r.metrics || {};
  const parts = [];
  if (m.lease_expired) parts.push('lease expired' + (m.lease_expired.worker ? ' (worker ' + m.lease_expired.worker + ')' : ''));
  if (m.timed_out) parts.push('timed out');
  if (m.exit_code !== undefined && m.exit_code !== null) parts.push('exit status ' + m.exit_code);
  if (m.signal !== undefined && m.signal !== null) parts.push('signal ' + m.signal);
  // The worker's own words, unless they say what is already said.
  if (m.error && !parts.some((p) => m.error.includes(p))) parts.push(m.error);
  return parts.length ? parts.join(' · ') : (r.status === 'cancelled' ? 'cancelled' : 'no error reported');
}

// The failed dates first: each with its attempt, what went wrong, the end of its output and
// Retry; and "Retry failed dates" (run again with reprocess_behavior failed).
function failures(b, failed) {
  if (!failed || !failed.pipeline_runs.length) return null;
  const n = failed.metadata.count, shown = failed.pipeline_runs.length;
  return el('section', { id: 'failures', class: 'failures', 'aria-labelledby': 'failures-title' },
    el('div', { class: 'toolbar' },
      el('h2', { id: 'failures-title' }, n + ' failed date' + (n === 1 ? '' : 's') + (n > shown ? ' (the newest ' + shown + ' shown)' : '')),
      action('Retry failed dates', () => runAgain(b, 'failed'), { class: 'retry-failed' })),
    el('ul', { class: 'failed-runs' }, failed.pipeline_runs.map((r) => el('li', { 'data-id': r.id },
      el('div', { class: 'failed-head' },
        el('a', { href: '#/runs/' + r.id }, when(r.execution_date)),
        el('span', { class: 'note' }, ' attempt ' + (r.attempt || '—') + ' · '),
        el('span', { class: 'error' }, whatWentWrong(r)), ' ',
        action('Retry', () => retry(r))),
      r.metrics && r.metrics.output_tail ? el('pre', { class: 'tail', 'aria-label': 'end of the output' }, r.metrics.output_tail) : null))));
}

// --- The date map: every date of the backfill, in order, coloured by its newest run --------

// A cell's colour: a date's status, or for a range, the worst of its dates' (a failed date
// among thousands of completed ones still shows), then running, then the most common.
function cellStatus(counts) {
  for (const s of ['failed', 'running']) if (counts[s]) return s;
  let best = 'none', most = 0;
  for (const s of ['initial', 'cancelled', 'completed', 'none']) if ((counts[s] || 0) > most) { best = s; most = counts[s]; }
  return best;
}

function cellSays(c) {
  const what = c.dates === 1 ? when(c.first) : when(c.first) + ' → ' + when(c.last) + ' (' + c.dates + ' dates)';
  const parts = [];
  for (const s of STATUSES.concat(['none'])) if (c.counts[s]) parts.push(c.counts[s] + ' ' + (s === 'none' ? 'not run' : s));
  return what + ': ' + parts.join(', ');
}

// The runs of the range a click chose, kept across redraws of the view.
const picked = { id: null, cell: null, node: null };

function dateMap(b, map) {
  const cells = map.cells;
  const says = el('p', { id: 'map-says', class: 'note', 'aria-live': 'polite' },
    cells.length < map.dates ? map.dates + ' dates in ' + cells.length + ' cells of about ' + Math.ceil(map.dates / cells.length) + ' dates each: point at one to see it, click it to list its runs.'
      : map.dates + ' dates, one cell each: point at one to see it, click it to list its runs.');
  const legend = el('p', { class: 'legend', 'aria-hidden': 'true' },
    STATUSES.concat(['none']).map((st) => el('span', {}, el('span', { class: 'cell ' + st }), st === 'none' ? 'not run' : st)));
  const list = el('ul', { class: 'grid datemap', 'aria-label': 'date map: ' + map.dates + ' dates in ' + cells.length + ' cells; arrow keys move' });
  const buttons = cells.map((c, i) => {
    const text = cellSays(c);
    const status = cellStatus(c.counts);
    const mixed = Object.values(c.counts).filter((n) => n > 0).length > 1;
    // One stop in the Tab order: the arrow keys move between cells.
    const button = el('button', { type: 'button', class: 'cell ' + status + (mixed ? ' mixed' : ''), title: text, 'aria-label': text,
      'data-dates': String(c.dates), 'data-first': c.first, tabindex: i === 0 ? '0' : '-1',
      onclick: () => pick(b, c), onfocus: () => { says.textContent = text; }, onmouseenter: () => { says.textContent = text; } });
    return button;
  });
  list.append(...buttons.map((x) => el('li', {}, x)));
  list.addEventListener('keydown', (ev) => {
    const at = buttons.indexOf(document.activeElement);
    if (at < 0) return;
    const perRow = Math.max(1, Math.round(list.clientWidth / 14));
    const to = { ArrowRight: at + 1, ArrowLeft: at - 1, ArrowDown: at + perRow, ArrowUp: at - perRow, Home: 0, End: buttons.length - 1 }[ev.key];
    if (to === undefined) return;
    ev.preventDefault();
    const next = buttons[Math.min(buttons.length - 1, Math.max(0, to))];
    buttons[at].tabIndex = -1; next.tabIndex = 0; next.focus();
  });
  const total = cells.reduce((n, c) => n + c.dates, 0);
  return el('section', { id: 'date-map', 'data-total': String(total) }, el('h2', {}, 'Every date'), legend, list, says);
}

// A click on the map: that range's runs, read by their dates (execution_date_from and _to,
// the cell's first and last), page after page; each date shows its newest run.
async function pick(b, c) {
  picked.id = b.id; picked.cell = c;
  const node = el('section', { id: 'range', 'aria-live': 'polite' }, el('h2', {}, when(c.first) + (c.dates > 1 ? ' → ' + when(c.last) : '')), el('p', { class: 'note' }, 'Loading its runs…'));
  if (picked.node) picked.node.replaceWith(node);
  else { const map = document.getElementById('date-map'); if (map) map.after(node); }
  picked.node = node;
  const newest = new Map();
  try {
    let cursor = '';
    do {
      const q = new URLSearchParams({ backfill_id: String(b.id), execution_date_from: c.first, execution_date_to: c.last, _limit: '1000' });
      if (cursor) q.set('_cursor', cursor);
      const page = await api('/api/pipeline_runs?' + q);
      for (const r of page.pipeline_runs) {
        const seen = newest.get(r.execution_date);
        if (!seen || r.id > seen.id) newest.set(r.execution_date, r);
      }
      cursor = page.metadata.next ? page.metadata.cursor : '';
    } while (cursor && picked.node === node);
  } catch (e) {
    if (picked.node === node) node.replaceChildren(el('h2', {}, when(c.first)), problem(e));
    return;
  }
  if (picked.node !== node) return;
  const runs = [...newest.values()].sort((x, y) => (x.execution_date < y.execution_date ? -1 : 1));
  node.replaceChildren(
    el('h2', {}, c.dates > 1 ? 'Dates ' + when(c.first) + ' → ' + when(c.last) : 'Date ' + when(c.first)),
    el('p', { class: 'note' }, cellSays(c)),
    runs.length ? runsTable(runs) : el('p', { class: 'note' }, 'No runs yet.'),
    el('button', { type: 'button', onclick: () => { node.remove(); picked.node = null; picked.cell = null; } }, 'Close'));
}

// --- How long, how fast, when done ----------------------------------------------------------

// The page's own successive reads of each backfill: (when, dates finished), for its rate.
const samples = new Map();
const RATE_WINDOW_MS = 5 * 60 * 1000;

function finished(b) {
  const c = b.run_status_counts || {};
  return (c.completed || 0) + (c.failed || 0) + (c.cancelled || 0);
}

function sample(b) {
  const now = Date.now();
  const list = (samples.get(b.id) || []).filter((s) => now - s.t <= RATE_WINDOW_MS);
  list.push({ t: now, done: finished(b) });
  samples.set(b.id, list);
}

// Dates finished per minute over the last few minutes this page watched, or null before it
// has seen any finish.
function rate(b) {
  const list = samples.get(b.id) || [];
  if (list.length < 2) return null;
  const first = list[0], last = list[list.length - 1];
  if (last.t - first.t < 1000 || last.done <= first.done) return null;
  return (last.done - first.done) / ((last.t - first.t) / 60000);
}

function progressText(b) {
  const c = b.run_status_counts || {};
  const left = (c.initial || 0) + (c.running || 0);
  const start = parse(b.started_at);
  if (!b.status || start === null) return null;
  if (!left) {
    const end = parse(b.completed_at || b.failed_at);
    return end !== null ? 'Took ' + span(end - start) + ' (started ' + when(b.started_at) + ').' : null;
  }
  const per = rate(b);
  const running = 'Running for ' + span(Date.now() - start) + '; ' + left + ' date' + (left === 1 ? '' : 's') + ' left. ';
  if (per === null) return running + (b.is_paused ? 'Paused.' : 'Rate: measuring (no date has finished since this page opened).');
  const eta = Date.now() + (left / per) * 60000;
  return running + 'Rate: ' + (per >= 10 ? Math.round(per) : per.toFixed(1)) + ' dates per minute recently. Estimated to finish in about ' +
    span(eta - Date.now()) + ', at ' + clock(new Date(eta)) + '.';
}

// Brought up to date on each read, without redrawing the view.
function updateProgress(b) {
  const line = document.getElementById('progress');
  const text = progressText(b);
  if (line && text !== null && line.textContent !== text) line.textContent = text;
}

// Each date's duration, a bar per date of the page's runs, in date order: a date that took
// far longer than the others stands out. Inline SVG, drawn by the page.
function durationsChart(runs) {
  const newest = new Map();
  for (const r of runs) {
    const seen = newest.get(r.execution_date);
    if (!seen || r.id > seen.id) newest.set(r.execution_date, r);
  }
  const now = Date.now();
  const bars = [...newest.values()].filter((r) => parse(r.started_at) !== null)
    .sort((x, y) => (x.execution_date < y.execution_date ? -1 : 1))
    .map((r) => ({ r, ms: (parse(r.completed_at) || now) - parse(r.started_at) }));
  if (!bars.length) return null;
  const max = Math.max(...bars.map((x) => x.ms), 1);
  const width = 600, height = 120, step = width / bars.length;
  const chart = svg('svg', { id: 'durations', viewBox: '0 0 ' + width + ' ' + (height + 2), preserveAspectRatio: 'none', role: 'img',
    'aria-label': 'Durations of ' + bars.length + ' dates, the longest ' + span(max) });
  for (const [i, x] of bars.entries()) {
    const h = Math.max(1, (x.ms / max) * height);
    chart.append(svg('rect', { x: (i * step).toFixed(2), y: (height - h).toFixed(2), width: Math.max(0.5, step * 0.8).toFixed(2), height: h.toFixed(2),
      class: 'bar-' + x.r.status, 'data-ms': String(x.ms) }, svg('title', {}, when(x.r.execution_date) + ': ' + span(x.ms) + ' (' + x.r.status + ')')));
  }
  chart.append(svg('line', { x1: 0, x2: width, y1: height + 1, y2: height + 1, class: 'axis' }));
  return el('section', { id: 'durations-section' }, el('h2', {}, 'How long each date took'),
    el('p', { class: 'note' }, bars.length + ' date' + (bars.length === 1 ? '' : 's') + ' of the runs below, in date order; the tallest took ' + span(max) + '.'),
    el('div', { class: 'chart' }, chart));
}

function runsTable(runs, id) {
  return el('div', { class: 'table-wrap' }, el('table', { class: 'runs', id },
    el('thead', {}, el('tr', {}, ['Run', 'Date', 'Status', 'Attempt', 'Duration', 'Worker', 'Output', ''].map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, runs.map((r) => el('tr', { 'data-id': r.id },
      el('td', { class: 'num' }, el('a', { href: '#/runs/' + r.id }, String(r.id))),
      el('td', {}, when(r.execution_date)),
      el('td', {}, statusBadge(r.status)),
      el('td', { class: 'num' }, r.attempt === null || r.attempt === undefined ? '—' : String(r.attempt)),
      el('td', { class: 'num' }, duration(r)),
      el('td', {}, r.worker || '—', r.lease_expires_at ? el('div', { class: 'note' }, 'lease ends ', relative(r.lease_expires_at)) : null),
      el('td', { class: 'output' }, r.metrics && (r.metrics.error || r.metrics.output_tail)
        ? el('details', {}, el('summary', {}, r.metrics.error || 'output'), r.metrics.output_tail ? el('pre', {}, r.metrics.output_tail) : null)
        : ''),
      // Retry is for what did not complete: a failed or a cancelled run.
      el('td', {}, ['failed', 'cancelled'].includes(r.status) ? action('Retry', () => retry(r)) : ''))))));
}

async function showBackfill(id, params, mode, fresh) {
  const cursor = params.get('cursor') || '';
  let b, map = null, page = null, failed = null;
  try {
    b = (await api('/api/backfills/' + id + '?include_run_count=true')).backfill;
    if (b.status) {
      const q = new URLSearchParams({ backfill_id: String(id), _limit: String(RUNS_PAGE) });
      if (cursor) q.set('_cursor', cursor);
      const anyFailed = b.run_status_counts && b.run_status_counts.failed;
      // One read of each per reload, each conditional: the date map, a page of runs, and the
      // failed dates (the newest run of each date that failed).
      [map, page, failed] = await Promise.all([
        // A server without the date map (an older one) leaves it out.
        api('/api/backfills/' + id + '/date_map?cells=' + MAP_CELLS).then((d) => d.date_map, (e) => { if (e.status === 404) return null; throw e; }),
        api('/api/pipeline_runs?' + q),
        anyFailed ? api('/api/pipeline_runs?' + new URLSearchParams({ backfill_id: String(id), status: 'last_run_failed', _limit: '50' })) : null,
      ]);
    }
  } catch (e) {
    // While reloading itself a view keeps what it shows when the server is away (the header
    // says so), but says when the backfill is gone or the credentials are refused.
    if (!fresh() || (mode === 'live' && e.kind === 'unreachable')) return;
    if (e.status === 404) {
      show(el('h1', {}, 'Backfill ' + id), el('div', { class: 'problem', role: 'alert' }, 'Backfill ' + id + ' does not exist (it may have been deleted). ', el('a', { href: '#/' }, 'Back to the backfills')));
    } else {
      show(el('h1', {}, 'Backfill ' + id), problem(e));
    }
    return;
  }
  if (!fresh()) return;
  sample(b);
  if (same(mode, [b, map, page, failed])) { updateProgress(b); return; }
  let preview = null;
  if (!b.status) {
    try {
      const p = await api('/api/backfills/' + id + '?include_preview_runs=true&_limit=40');
      const runs = p.backfill.pipeline_run_dates || [];
      preview = el('section', {}, el('h2', {}, 'Run dates once started (first ' + runs.length + ' of ' + b.total_run_count + ')'),
        el('ol', { class: 'preview' }, runs.map((r) => el('li', {}, when(r.execution_date)))));
    } catch (e) { preview = null; }
  }
  const field = (label, value) => [el('dt', {}, label), el('dd', {}, value)];
  const runs = page ? page.pipeline_runs : [];
  const pager = page ? el('nav', { class: 'pager', 'aria-label': 'run pages' },
    cursor ? el('a', { href: '#/backfills/' + id }, 'Newest runs') : null,
    page.metadata.next && page.metadata.cursor ? el('a', { href: '#/backfills/' + id + '?cursor=' + encodeURIComponent(page.metadata.cursor), rel: 'next' }, 'Older runs') : null) : null;
  if (picked.id !== b.id) { picked.id = null; picked.cell = null; picked.node = null; }
  show(
    el('h1', {}, b.name, ' ', statusBadge(b.status), flags(b)),
    el('p', { id: 'message', class: 'problem', role: 'alert', hidden: true }),
    failureNote(b),
    actions(b),
    failures(b, failed),
    countsBar(b.run_status_counts, b.total_run_count),
    el('p', { id: 'progress', class: 'progress' }, progressText(b) || ''),
    map ? dateMap(b, map) : null,
    picked.node,
    el('dl', { class: 'fields' },
      field('Pipeline', el('a', { href: listHash({ pipeline: b.pipeline_uuid }) }, b.pipeline_uuid)),
      field('Dates', [when(b.start_datetime), ' → ', when(b.end_datetime)]),
      field('Interval', interval(b)),
      field('Total runs', String(b.total_run_count)),
      field('Created at', relative(b.created_at)),
      field('Started at', relative(b.started_at)),
      field('Completed at', relative(b.completed_at)),
      field('Failed at', relative(b.failed_at)),
      field('Variables', el('pre', {}, JSON.stringify(b.variables || {}, null, 2))),
      field('Settings', el('pre', {}, JSON.stringify(b.settings || {}, null, 2)))),
    preview,
    page ? durationsChart(runs) : null,
    page ? el('section', {}, el('h2', {}, 'Runs (' + page.metadata.count + ', newest first; ' + RUNS_PAGE + ' a page)'), runsTable(runs, 'runs'), pager) : null,
    el('p', {}, el('a', { href: '#/' }, 'All backfills')));
}

// --- Creating one ----------------------------------------------------------------------

const FIELDS = [
  ['name', 'Name', 'text'], ['pipeline_uuid', 'Pipeline', 'text'],
  ['start_datetime', 'Start (UTC)', 'when'], ['end_datetime', 'End (UTC)', 'when'],
  ['interval_type', 'Interval', 'select'], ['interval_units', 'Every', 'number'],
];

// The settings the form sets (docs/workers.md): key, label, kind.
const SETTINGS = [
  ['pipeline_run_limit', 'Run limit (at most this many at once; empty: none)', 'number'],
  ['max_attempts', 'Max attempts (1 to 100; empty: 3)', 'number'],
  ['run_backwards', 'Run backwards (newest dates first)', 'check'],
  ['stop_on_failure', 'Stop at the first failed date (otherwise every date runs)', 'check'],
];

// The API's "2023-03-01 04:00:00+00:00" as the form takes it: "2023-03-01 04:00".
function formDate(s) { return s ? s.replace('T', ' ').replace(/(:\d\d)?(\.\d+)?[+-]\d\d:\d\d$/, (m, sec) => (sec && sec !== ':00' ? sec : '')) : ''; }

// "2023-03-01", "2023-03-01 04:00" or with seconds, in UTC; anything else goes as typed, so
// that the API's own message about it comes back.
function utc(v) {
  v = v.trim();
  if (!v) return null;
  const m = v.match(/^(\d{4}-\d\d-\d\d)(?:[ T](\d\d:\d\d)(:\d\d)?)?$/);
  return m ? m[1] + 'T' + (m[2] || '00:00') + (m[3] || ':00') + 'Z' : v;
}

// The variables box's text as an object, or the reason it is not one.
function variablesOf(text) {
  if (!text.trim()) return { value: null };
  try {
    const v = JSON.parse(text);
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return { error: 'variables are a JSON object: {"key": "value"}' };
    return { value: v };
  } catch (e) {
    return { error: 'not JSON: ' + e.message };
  }
}

// The form that creates a backfill, or, given one, edits it (its pipeline stays).
function backfillForm(existing) {
  const inputs = {};
  const errors = {};
  const rows = FIELDS.map(([key, label, type]) => {
    const input = type === 'select'
      ? el('select', { id: 'f-' + key, name: key, 'aria-describedby': 'e-' + key }, ['minute', 'hour', 'day', 'week', 'month', 'year', 'second', 'custom'].map((t) => el('option', { value: t }, t)))
      : el('input', { id: 'f-' + key, name: key, type: type === 'when' ? 'text' : type, placeholder: type === 'when' ? '2023-03-01 00:00' : undefined,
        inputmode: type === 'number' ? 'numeric' : undefined, value: type === 'number' ? '1' : undefined, 'aria-describedby': 'e-' + key });
    if (key === 'interval_type') input.value = 'day';
    if (existing) {
      const v = existing[key];
      input.value = type === 'when' ? formDate(v) : (v === null || v === undefined ? '' : String(v));
      if (key === 'pipeline_uuid') input.disabled = true;
    }
    inputs[key] = input;
    errors[key] = el('span', { id: 'e-' + key, class: 'field-error', role: 'alert' });
    return el('label', { for: 'f-' + key }, label, input, errors[key]);
  });
  const variables = el('textarea', { id: 'f-variables', name: 'variables', rows: '4', spellcheck: 'false', placeholder: '{"region": "eu"}', 'aria-describedby': 'e-variables' });
  if (existing && existing.variables && Object.keys(existing.variables).length) variables.value = JSON.stringify(existing.variables, null, 2);
  errors.variables = el('span', { id: 'e-variables', class: 'field-error', role: 'alert' });
  inputs.variables = variables;
  // Checked as it is typed.
  const checkVariables = () => {
    const v = variablesOf(variables.value);
    errors.variables.textContent = v.error || '';
    if (v.error) variables.setAttribute('aria-invalid', 'true'); else variables.removeAttribute('aria-invalid');
    return v;
  };
  variables.addEventListener('input', checkVariables);
  // The settings the form knows; the backfill's other settings are sent back as they are.
  const settings = (existing && existing.settings) || {};
  const settingInputs = {};
  const settingRows = SETTINGS.map(([key, label, kind]) => {
    const input = kind === 'check'
      ? el('input', { id: 'f-' + key, name: key, type: 'checkbox' })
      : el('input', { id: 'f-' + key, name: key, type: 'number', min: '1', inputmode: 'numeric' });
    const v = settings[key];
    if (kind === 'check') input.checked = v === true;
    else input.value = v === null || v === undefined ? '' : String(v);
    settingInputs[key] = input;
    return kind === 'check' ? el('label', { for: 'f-' + key, class: 'check' }, input, ' ' + label) : el('label', { for: 'f-' + key }, label, input);
  });
  errors.settings = el('span', { id: 'e-settings', class: 'field-error', role: 'alert' });
  inputs.settings = settingInputs.stop_on_failure;
  const settingsNow = () => {
    const out = Object.assign({}, settings);
    for (const [key, , kind] of SETTINGS) {
      const input = settingInputs[key];
      if (kind === 'check') { if (input.checked) out[key] = true; else delete out[key]; } else {
        const t = input.value.trim();
        if (t === '') delete out[key]; else out[key] = /^\d+$/.test(t) ? Number(t) : t;
      }
    }
    return out;
  };
  const sameSettings = (a, b) => JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());
  const fieldsNow = () => {
    const body = { name: inputs.name.value, start_datetime: utc(inputs.start_datetime.value), end_datetime: utc(inputs.end_datetime.value),
      interval_type: inputs.interval_type.value, interval_units: /^\s*\d+\s*$/.test(inputs.interval_units.value) ? Number(inputs.interval_units.value) : inputs.interval_units.value };
    const v = variablesOf(variables.value);
    if (!v.error && v.value) body.variables = v.value;
    const s = settingsNow();
    if (!sameSettings(s, settings)) body.settings = s;
    return body;
  };
  // What creating it would make, from the preview (which stores nothing), as the dates and
  // the interval change.
  const preview = el('p', { id: 'form-preview', class: 'note', 'aria-live': 'polite' }, existing ? '' : 'Type the dates to see how many runs they make.');
  let asked = 0;
  const ask = async () => {
    const mine = ++asked;
    const body = fieldsNow();
    if (!body.start_datetime || !body.end_datetime) { preview.textContent = 'Type the dates to see how many runs they make.'; return; }
    body.name = body.name.trim() || 'preview';
    delete body.settings;
    const pipeline = inputs.pipeline_uuid.value.trim() || 'preview';
    try {
      const p = (await api('/api/pipelines/' + encodeURIComponent(pipeline) + '/backfills/preview?_limit=1', 'POST', { backfill: body })).backfill_preview;
      if (mine !== asked) return;
      const first = p.pipeline_run_dates[0], lasts = p.last_pipeline_run_dates || [];
      const last = lasts.length ? lasts[lasts.length - 1] : first;
      preview.replaceChildren(el('strong', { id: 'preview-count' }, String(p.total_run_count)), ' run' + (p.total_run_count === 1 ? '' : 's'),
        first ? ': the first ' + when(first.execution_date) + ', the last ' + when(last.execution_date) + '.' : '.');
    } catch (e) {
      if (mine === asked) preview.textContent = 'No runs: ' + e.message;
    }
  };
  let timer = 0;
  const later = () => { clearTimeout(timer); timer = setTimeout(ask, 250); };
  if (!existing || !existing.status) {
    for (const key of ['start_datetime', 'end_datetime', 'interval_type', 'interval_units']) {
      inputs[key].addEventListener('input', later);
      inputs[key].addEventListener('change', later);
    }
  }
  const general = el('p', { id: 'message', class: 'problem', role: 'alert', hidden: true });
  let start = false;
  const submit = el('button', { type: 'submit', id: 'create', onclick: () => { start = false; } }, existing ? 'Save' : 'Create');
  const submitStart = existing ? null : el('button', { type: 'submit', id: 'create-start', onclick: () => { start = true; } }, 'Create and start');
  const form = el('form', { class: 'create', onsubmit: async (ev) => {
    ev.preventDefault();
    for (const e of Object.values(errors)) e.textContent = '';
    for (const i of Object.values(inputs)) i.removeAttribute('aria-invalid');
    say('');
    const v = checkVariables();
    if (v.error) { variables.focus(); return; }
    const body = fieldsNow();
    if (existing && !v.value && existing.variables && Object.keys(existing.variables).length) body.variables = {};
    const pipeline = inputs.pipeline_uuid.value.trim();
    if (!pipeline) { errors.pipeline_uuid.textContent = 'a backfill belongs to a pipeline: name one'; return; }
    if (existing) {
      // Only what was changed: a started backfill refuses new dates, even equal ones.
      for (const [key, , type] of FIELDS) {
        const before = type === 'when' ? formDate(existing[key]) : (existing[key] === null || existing[key] === undefined ? '' : String(existing[key]));
        if (key === 'pipeline_uuid' || inputs[key].value === before) delete body[key];
      }
      if (JSON.stringify(body.variables || null) === JSON.stringify(existing.variables && Object.keys(existing.variables).length ? existing.variables : null)) delete body.variables;
    }
    submit.disabled = true;
    if (submitStart) submitStart.disabled = true;
    try {
      const made = existing
        ? await api('/api/backfills/' + existing.id, 'PUT', { backfill: body })
        : await api('/api/pipelines/' + encodeURIComponent(pipeline) + '/backfills', 'POST', { backfill: body });
      if (start) {
        try { await put(made.backfill.id, { status: 'initial' }); } catch (e) { location.hash = '#/backfills/' + made.backfill.id; say('Created, not started: ' + e.message); return; }
      }
      location.hash = '#/backfills/' + made.backfill.id;
    } catch (e) {
      // The API names the field each message is about ("interval_units: must be ..."):
      // shown next to it; any other message above the form.
      submit.disabled = false;
      if (submitStart) submitStart.disabled = false;
      const listed = e.body && e.body.error && e.body.error.errors;
      const messages = listed && listed.length ? listed : [e.message];
      for (const m of messages) {
        const [named, ...rest] = String(m).split(': ');
        // "settings.stop_on_failure: ..." is shown next to the settings.
        const field = named.startsWith('settings.') ? 'settings' : named;
        if (errors[field]) {
          errors[field].textContent = (field === 'settings' ? named + ': ' : '') + rest.join(': ');
          inputs[field].setAttribute('aria-invalid', 'true');
        } else {
          say(m);
        }
      }
    }
  } }, el('h1', {}, existing ? 'Edit ' + existing.name : 'New backfill'), general, el('div', { class: 'form-grid' }, rows),
  preview,
  el('label', { for: 'f-variables', class: 'wide' }, 'Variables (a JSON object; each run gets them)', variables, errors.variables),
  el('fieldset', { class: 'settings' }, el('legend', {}, 'Settings'), el('div', { class: 'form-grid' }, settingRows), errors.settings),
  el('div', { class: 'toolbar' }, submit, submitStart,
    existing ? el('a', { href: '#/backfills/' + existing.id, class: 'cancel-edit' }, ' Back without saving') : null));
  show(form);
  if (existing && !existing.status) ask();
}

async function editBackfill(id) {
  try {
    backfillForm((await api('/api/backfills/' + id)).backfill);
  } catch (e) {
    show(el('h1', {}, 'Backfill ' + id), problem(e));
  }
}

// --- One run and its log ---------------------------------------------------------------

// The log of the run on screen, followed with `after=` (its place in the run's output), kept
// across redraws.
const log = { id: null, received: 0, cut: 0, finished: false, pre: null, note: null, busy: false, timer: 0 };

function resetLog(id) {
  clearTimeout(log.timer);
  Object.assign(log, { id, received: 0, cut: 0, finished: false, busy: false, timer: 0,
    pre: el('pre', { id: 'log', class: 'log', tabindex: '0', 'aria-label': 'the run\'s output' }),
    note: el('p', { id: 'log-note', class: 'note', 'aria-live': 'polite' }, 'Loading the log…') });
}

async function followLog(id) {
  if (log.id !== id || log.busy) return;
  clearTimeout(log.timer);
  // A hidden tab asks again later.
  if (document.visibilityState !== 'visible') { log.timer = setTimeout(() => followLog(id), LOG_MS); return; }
  log.busy = true;
  try {
    const headers = headersFor();
    headers.Accept = 'text/plain';
    const resp = await call('/api/pipeline_runs/' + id + '/logs?after=' + log.received, { headers });
    if (log.id !== id) return;
    if (!resp.ok) { log.note.textContent = 'No log: ' + (await refusal(resp)).message; return; }
    const text = await resp.text();
    if (log.id !== id) return;
    const received = Number(resp.headers.get('backfilld-log-received'));
    const cut = Number(resp.headers.get('backfilld-log-cut') || '0');
    log.finished = resp.headers.get('backfilld-run-finished') === 'true';
    if (!Number.isNaN(received)) log.received = received;
    log.cut = cut;
    if (text) {
      // Kept at the bottom when it was there: a live log scrolls as it grows.
      const atEnd = log.pre.scrollTop + log.pre.clientHeight >= log.pre.scrollHeight - 4;
      log.pre.append(document.createTextNode(text));
      if (atEnd) log.pre.scrollTop = log.pre.scrollHeight;
    }
    const bytes = (n) => n + ' byte' + (n === 1 ? '' : 's');
    log.note.textContent = (log.received ? bytes(log.received) + ' of output' : 'No output yet') +
      (cut ? '; ' + bytes(cut) + ' were cut from the middle (the first and the last are kept)' : '') +
      (log.finished ? '; the run has finished.' : '; following it while the run runs.');
  } catch (e) {
    if (log.id === id) log.note.textContent = 'The log could not be read: ' + e.message;
  } finally {
    if (log.id === id) {
      log.busy = false;
      if (!log.finished) log.timer = setTimeout(() => followLog(id), LOG_MS);
    }
  }
}

async function showRun(id, mode, fresh) {
  let r;
  try {
    r = (await api('/api/pipeline_runs/' + id)).pipeline_run;
  } catch (e) {
    if (fresh() && !(mode === 'live' && e.kind === 'unreachable')) show(el('h1', {}, 'Run ' + id), problem(e));
    return;
  }
  if (!fresh()) return;
  if (log.id !== id) { resetLog(id); followLog(id); }
  if (same(mode, r)) return;
  show(el('h1', {}, 'Run ' + r.id + ' ', statusBadge(r.status)),
    el('p', {}, el('a', { href: '#/backfills/' + r.backfill_id }, 'Backfill ' + r.backfill_id), ' · ', when(r.execution_date),
      ' · attempt ' + (r.attempt || '—'), r.status === 'running' ? ' · running for ' : ' · took ', duration(r)),
    el('p', { id: 'message', class: 'problem', role: 'alert', hidden: true }),
    ['failed', 'cancelled'].includes(r.status)
      ? el('p', { class: 'problem' }, whatWentWrong(r), ' ', action('Retry', () => retry(r)))
      : null,
    runsTable([r]),
    el('h2', {}, 'Log'), log.note, log.pre,
    el('h2', {}, 'Metrics'), el('pre', {}, JSON.stringify(r.metrics || {}, null, 2)),
    el('h2', {}, 'Variables'), el('pre', {}, JSON.stringify(r.variables || {}, null, 2)));
  // A run that finished since the log's last read: read its end.
  if (log.finished === false && r.status !== 'running' && r.status !== 'initial' && !log.busy) followLog(id);
}

// --- Routing and live updates ----------------------------------------------------------

// The view on screen: which render drew it (a later one wins; an answer that comes back
// after the user moved on is dropped) and what data it drew (a reload that brings the same
// data leaves the page alone: focus, open details, a table scrolled sideways all stay).
const view = { seq: 0, drawn: null };

function same(mode, data) {
  const drawn = JSON.stringify(data);
  if (mode === 'live' && drawn === view.drawn) return true;
  view.drawn = drawn;
  return false;
}

// mode: 'nav' (a new view: drawn, focused, from the top), 'refresh' (after an action: drawn
// in place) or 'live' (a reload: drawn only if the data changed).
async function render(mode = 'nav') {
  const my = ++view.seq;
  const fresh = () => my === view.seq;
  if (mode !== 'live') view.drawn = null;
  const { path, params } = route();
  whoIsIn();
  const one = path.match(/^\/backfills\/(\d+)$/);
  const run = path.match(/^\/runs\/(\d+)$/);
  const edit = path.match(/^\/backfills\/(\d+)\/edit$/);
  if (!run && log.id !== null) { clearTimeout(log.timer); log.id = null; }
  if (path === '/' || path === '') await listBackfills(params, mode, fresh);
  else if (path === '/new') { if (mode === 'nav') backfillForm(null); }
  else if (edit) { if (mode === 'nav') await editBackfill(edit[1]); }
  else if (one) await showBackfill(Number(one[1]), params, mode, fresh);
  else if (run) await showRun(Number(run[1]), mode, fresh);
  else show(el('div', { class: 'problem' }, 'Nothing here. ', el('a', { href: '#/' }, 'See the backfills')));
  tick();
  // A new view: focus its content for keyboard and screen-reader users, from the top.
  if (mode === 'nav' && fresh()) { app().focus({ preventScroll: true }); window.scrollTo(0, 0); }
}

// While the tab is visible the view reloads itself every few seconds, one reload at a time
// (the next is timed from the end of the last), and not while someone types in a field.
function startLive() {
  const typing = () => document.activeElement && ['INPUT', 'TEXTAREA', 'SELECT'].includes(document.activeElement.tagName);
  const again = async () => {
    if (document.visibilityState === 'visible' && !typing()) {
      try { await render('live'); } catch (e) { /* the next tick tries again */ }
    } else {
      tick();
    }
    setTimeout(again, LIVE_MS);
  };
  setTimeout(again, LIVE_MS);
}

window.addEventListener('hashchange', () => render());
document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('signout').addEventListener('click', () => logOut());
  render();
  startLive();
});
