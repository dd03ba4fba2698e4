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
  const live = document.getElementById('live');
  try {
    // 'no-cache': ask the server each time, naming the version held (If-None-Match); an
    // unchanged answer is then a 304 with no body, and the server skips the read.
    resp = await fetch(path, { method, headers, cache: 'no-cache', body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    // Said in the header too, so that a view that reloads itself says its data is old.
    if (live && live.className !== 'stale') {
      live.textContent = 'No answer from the server since ' + clock(new Date()) + ': showing what was last seen.';
      live.className = 'stale';
      live.setAttribute('role', 'alert');
    }
    throw new ApiError('unreachable', 'The server did not answer. Is backfilld still running at ' + location.origin + '?');
  }
  if (live && resp.ok) { live.textContent = 'Updated ' + clock(new Date()); live.className = 'note'; live.removeAttribute('role'); }
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

async function listBackfills(params, mode, fresh) {
  const pipeline = params.get('pipeline') || '';
  const cursor = params.get('cursor') || '';
  const base = pipeline ? '/api/pipelines/' + encodeURIComponent(pipeline) + '/backfills' : '/api/backfills';
  const query = new URLSearchParams({ include_run_count: 'true', _limit: String(PAGE) });
  if (cursor) query.set('_cursor', cursor);
  let data;
  try {
    data = await api(base + '?' + query);
  } catch (e) {
    if (fresh() && !(mode === 'live' && e.kind === 'unreachable')) show(el('h1', {}, 'Backfills'), problem(e));
    return;
  }
  if (!fresh() || same(mode, data)) return;
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
      : ['No backfills yet. ', el('a', { href: '#/new' }, 'Create one'), ' (or POST /api/pipelines/PIPELINE/backfills), or run `backfilld demo` to see backfilld at work.']);
  } else {
    const table = el('table', { id: 'backfills' },
      el('caption', { class: 'note' }, data.metadata.count + ' backfill' + (data.metadata.count === 1 ? '' : 's') + (pipeline ? ' in ' + pipeline : '') + ', newest first'),
      el('thead', {}, el('tr', {}, ['Status', 'Name', 'Pipeline', 'Dates', 'Interval', 'Runs', 'Total', 'Started at', 'Completed at'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows.map((b) => el('tr', { 'data-id': b.id },
        el('td', {}, statusBadge(b.status), flags(b)),
        el('td', { class: 'name' }, el('a', { href: '#/backfills/' + b.id }, b.name)),
        el('td', {}, el('a', { href: '#/?pipeline=' + encodeURIComponent(b.pipeline_uuid) }, b.pipeline_uuid)),
        el('td', { class: 'dates' }, when(b.start_datetime), el('br'), '→ ' + when(b.end_datetime)),
        el('td', { class: 'interval' }, interval(b)),
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
  // When the first page of rows is on screen: the frame after they went into the page (the
  // bench reads it: examples/bench.rs).
  if (rows.length && !performance.getEntriesByName('backfills-rows').length) {
    requestAnimationFrame(() => setTimeout(() => { if (!performance.getEntriesByName('backfills-rows').length) performance.mark('backfills-rows'); }));
  }
}

// --- One backfill ----------------------------------------------------------------------

const GRID_PAGE = 500;

// A button that calls the API and shows its answer: a refusal in the view's message line,
// success by rendering again.
function action(label, run, opts) {
  return el('button', { type: 'button', class: (opts && opts.class) || '', onclick: async (ev) => {
    if (opts && opts.confirm && !confirm(opts.confirm)) return;
    ev.target.disabled = true;
    try {
      await run();
      if (opts && opts.after) opts.after(); else render('refresh');
    } catch (e) {
      say(e.message);
      ev.target.disabled = false;
    }
  } }, label);
}

function say(text) {
  const line = document.getElementById('message');
  if (line) { line.textContent = text; line.hidden = !text; }
}

function put(id, fields) { return api('/api/backfills/' + id, 'PUT', { backfill: fields }); }

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
    buttons.push(el('span', { class: 'again' }, how, action('Run again', () =>
      put(id, { status: 'initial', settings: Object.assign({}, b.settings || {}, { reprocess_behavior: how.value }) }))));
  }
  buttons.push(el('a', { href: '#/backfills/' + id + '/edit', class: 'button' }, 'Edit'));
  buttons.push(action('Delete', () => api('/api/backfills/' + id, 'DELETE'), {
    confirm: 'Delete backfill "' + b.name + '"? Its runs are kept.', class: 'danger', after: () => { location.hash = '#/'; },
  }));
  return el('div', { class: 'toolbar actions' }, buttons);
}

// The run dates as a grid of cells, one per date, coloured by the status of the date's
// newest run, a page of runs at a time: a 100,000-run backfill is 200 pages of 500, each a
// cheap request (the listing's cursor), where one request for all would be megabytes.
function grid(runs) {
  const newest = new Map();
  for (const r of runs) {
    const key = r.execution_date || ('run ' + r.id);
    const seen = newest.get(key);
    if (!seen || r.id > seen.id) newest.set(key, r);
  }
  const dates = [...newest.keys()].sort();
  const legend = el('p', { class: 'legend', 'aria-hidden': 'true' },
    STATUSES.map((st) => el('span', {}, el('span', { class: 'cell ' + st }), st)));
  return el('div', {}, legend, el('ul', { class: 'grid', 'aria-label': dates.length + ' run dates' },
    dates.map((d) => {
      const r = newest.get(d);
      const says = when(d) + ': ' + r.status + (r.attempt > 1 ? ' (attempt ' + r.attempt + ')' : '');
      // Out of the tab order (500 stops would be a trap): the runs table below has each run.
      return el('li', {}, el('a', { tabindex: '-1', class: 'cell ' + r.status, href: '#/runs/' + r.id, title: says, 'aria-label': says }));
    })));
}

function runsTable(runs) {
  return el('div', { class: 'table-wrap' }, el('table', { id: 'runs' },
    el('thead', {}, el('tr', {}, ['Run', 'Date', 'Status', 'Attempt', 'Worker', 'Lease until', 'Output', ''].map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, runs.map((r) => el('tr', { 'data-id': r.id },
      el('td', { class: 'num' }, String(r.id)),
      el('td', {}, when(r.execution_date)),
      el('td', {}, statusBadge(r.status)),
      el('td', { class: 'num' }, r.attempt === null || r.attempt === undefined ? '—' : String(r.attempt)),
      el('td', {}, r.worker || '—'),
      el('td', {}, when(r.lease_expires_at)),
      el('td', { class: 'output' }, r.metrics && (r.metrics.error || r.metrics.output_tail)
        ? el('details', {}, el('summary', {}, r.metrics.error || 'output'), r.metrics.output_tail ? el('pre', {}, r.metrics.output_tail) : null)
        : ''),
      el('td', {}, ['failed', 'cancelled', 'completed'].includes(r.status)
        ? action('Retry', () => api('/api/pipeline_runs/' + r.id + '/retry', 'POST'))
        : ''))))));
}

async function showBackfill(id, params, mode, fresh) {
  const cursor = params.get('cursor') || '';
  let b, page;
  try {
    b = (await api('/api/backfills/' + id + '?include_run_count=true')).backfill;
    if (b.status) {
      const q = new URLSearchParams({ backfill_id: String(id), _limit: String(GRID_PAGE) });
      if (cursor) q.set('_cursor', cursor);
      page = await api('/api/pipeline_runs?' + q);
    } else {
      page = null;
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
  if (!fresh() || same(mode, [b, page])) return;
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
  show(
    el('h1', {}, b.name, ' ', statusBadge(b.status), flags(b)),
    el('p', { id: 'message', class: 'problem', role: 'alert', hidden: true }),
    failureNote(b),
    actions(b),
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
    preview,
    page ? el('section', {}, el('h2', {}, 'Runs (' + page.metadata.count + ', newest first; ' + GRID_PAGE + ' a page)'), grid(runs), runsTable(runs), pager) : null,
    el('p', {}, el('a', { href: '#/' }, 'All backfills')));
}

// --- Creating one ----------------------------------------------------------------------

const FIELDS = [
  ['name', 'Name', 'text'], ['pipeline_uuid', 'Pipeline', 'text'],
  ['start_datetime', 'Start (UTC)', 'when'], ['end_datetime', 'End (UTC)', 'when'],
  ['interval_type', 'Interval', 'select'], ['interval_units', 'Every', 'number'],
];

// The API's "2023-03-01 04:00:00+00:00" as the form takes it: "2023-03-01 04:00".
function formDate(s) { return s ? s.replace('T', ' ').replace(/(:\d\d)?(\.\d+)?[+-]\d\d:\d\d$/, (m, sec) => (sec && sec !== ':00' ? sec : '')) : ''; }

// The form that creates a backfill, or, given one, edits it (its pipeline stays).
function backfillForm(existing) {
  const inputs = {};
  const errors = {};
  const rows = FIELDS.map(([key, label, type]) => {
    const input = type === 'select'
      ? el('select', { id: 'f-' + key, name: key, 'aria-describedby': 'e-' + key }, ['minute', 'hour', 'day', 'week', 'month', 'year', 'second', 'custom'].map((t) => el('option', { value: t }, t)))
      : el('input', { id: 'f-' + key, name: key, type: type === 'when' ? 'text' : type, placeholder: type === 'when' ? '2023-03-01 00:00' : undefined,
        inputmode: type === 'number' ? 'numeric' : undefined, value: type === 'number' ? '1' : undefined, 'aria-describedby': 'e-' + key });
    if (existing) {
      const v = existing[key];
      input.value = type === 'when' ? formDate(v) : (v === null || v === undefined ? '' : String(v));
      if (key === 'pipeline_uuid') input.disabled = true;
    }
    inputs[key] = input;
    errors[key] = el('span', { id: 'e-' + key, class: 'field-error', role: 'alert' });
    return el('label', { for: 'f-' + key }, label, input, errors[key]);
  });
  // settings.stop_on_failure; the backfill's other settings are sent back as they are.
  const stops = el('input', { id: 'f-stop_on_failure', name: 'stop_on_failure', type: 'checkbox' });
  const settings = (existing && existing.settings) || {};
  stops.checked = settings.stop_on_failure === true;
  errors.settings = el('span', { id: 'e-settings', class: 'field-error', role: 'alert' });
  inputs.settings = stops;
  rows.push(el('label', { for: 'f-stop_on_failure', class: 'check' }, stops,
    ' Stop at the first failed date (otherwise every date runs)', errors.settings));
  const general = el('p', { id: 'message', class: 'problem', role: 'alert', hidden: true });
  const submit = el('button', { type: 'submit' }, existing ? 'Save' : 'Create');
  const form = el('form', { class: 'create', onsubmit: async (ev) => {
    ev.preventDefault();
    for (const e of Object.values(errors)) e.textContent = '';
    for (const i of Object.values(inputs)) i.removeAttribute('aria-invalid');
    say('');
    // "2023-03-01", "2023-03-01 04:00" or with seconds, in UTC; anything else goes as typed,
    // so that the API's own message about it comes back.
    const utc = (v) => {
      v = v.trim();
      if (!v) return null;
      const m = v.match(/^(\d{4}-\d\d-\d\d)(?:[ T](\d\d:\d\d)(:\d\d)?)?$/);
      return m ? m[1] + 'T' + (m[2] || '00:00') + (m[3] || ':00') + 'Z' : v;
    };
    const body = { name: inputs.name.value, start_datetime: utc(inputs.start_datetime.value), end_datetime: utc(inputs.end_datetime.value),
      interval_type: inputs.interval_type.value, interval_units: /^\s*\d+\s*$/.test(inputs.interval_units.value) ? Number(inputs.interval_units.value) : inputs.interval_units.value };
    const pipeline = inputs.pipeline_uuid.value.trim();
    if (!pipeline) { errors.pipeline_uuid.textContent = 'a backfill belongs to a pipeline: name one'; return; }
    if (stops.checked !== (settings.stop_on_failure === true)) {
      body.settings = Object.assign({}, settings, { stop_on_failure: stops.checked });
    }
    if (existing) {
      // Only what was changed: a started backfill refuses new dates, even equal ones.
      for (const [key, , type] of FIELDS) {
        const before = type === 'when' ? formDate(existing[key]) : (existing[key] === null || existing[key] === undefined ? '' : String(existing[key]));
        if (key === 'pipeline_uuid' || inputs[key].value === before) delete body[key];
      }
    }
    submit.disabled = true;
    try {
      const made = existing
        ? await api('/api/backfills/' + existing.id, 'PUT', { backfill: body })
        : await api('/api/pipelines/' + encodeURIComponent(pipeline) + '/backfills', 'POST', { backfill: body });
      location.hash = '#/backfills/' + made.backfill.id;
    } catch (e) {
      // The API names the field each message is about ("interval_units: must be ..."):
      // shown next to it; any other message above the form.
      submit.disabled = false;
      const listed = e.body && e.body.error && e.body.error.errors;
      const messages = listed && listed.length ? listed : [e.message];
      for (const m of messages) {
        const [named, ...rest] = String(m).split(': ');
        // "settings.stop_on_failure: ..." is shown next to the box.
        const field = named.startsWith('settings.') ? 'settings' : named;
        if (errors[field]) {
          errors[field].textContent = rest.join(': ');
          inputs[field].setAttribute('aria-invalid', 'true');
        } else {
          say(m);
        }
      }
    }
  } }, el('h1', {}, existing ? 'Edit ' + existing.name : 'New backfill'), general, el('div', { class: 'form-grid' }, rows),
    submit,
    existing ? el('a', { href: '#/backfills/' + existing.id, class: 'cancel-edit' }, ' Back without saving') : null);
  show(form);
}

async function editBackfill(id) {
  try {
    backfillForm((await api('/api/backfills/' + id)).backfill);
  } catch (e) {
    show(el('h1', {}, 'Backfill ' + id), problem(e));
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
  if (!fresh() || same(mode, r)) return;
  show(el('h1', {}, 'Run ' + r.id + ' ', statusBadge(r.status)),
    el('p', {}, el('a', { href: '#/backfills/' + r.backfill_id }, 'Backfill ' + r.backfill_id)),
    runsTable([r]),
    el('h2', {}, 'Metrics'), el('pre', {}, JSON.stringify(r.metrics || {}, null, 2)),
    el('h2', {}, 'Variables'), el('pre', {}, JSON.stringify(r.variables || {}, null, 2)));
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
  document.getElementById('signout').hidden = !creds.key;
  const one = path.match(/^\/backfills\/(\d+)$/);
  const run = path.match(/^\/runs\/(\d+)$/);
  const edit = path.match(/^\/backfills\/(\d+)\/edit$/);
  if (path === '/' || path === '') await listBackfills(params, mode, fresh);
  else if (path === '/new') { if (mode === 'nav') backfillForm(null); }
  else if (edit) { if (mode === 'nav') await editBackfill(edit[1]); }
  else if (one) await showBackfill(one[1], params, mode, fresh);
  else if (run) await showRun(run[1], mode, fresh);
  else show(el('div', { class: 'problem' }, 'Nothing here. ', el('a', { href: '#/' }, 'See the backfills')));
  // A new view: focus its content for keyboard and screen-reader users, from the top.
  if (mode === 'nav' && fresh()) { app().focus({ preventScroll: true }); window.scrollTo(0, 0); }
}

// While the tab is visible the view reloads itself every few seconds, one reload at a time
// (the next is timed from the end of the last), and not while someone types in a field.
function startLive() {
  const typing = () => document.activeElement && ['INPUT', 'TEXTAREA', 'SELECT'].includes(document.activeElement.tagName);
  const tick = async () => {
    if (document.visibilityState === 'visible' && !typing()) {
      try { await render('live'); } catch (e) { /* the next tick tries again */ }
    }
    setTimeout(tick, LIVE_MS);
  };
  setTimeout(tick, LIVE_MS);
}

window.addEventListener('hashchange', () => render());
document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('signout').addEventListener('click', () => { creds.clear(); render(); });
  render();
  startLive();
});
