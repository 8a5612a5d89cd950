// The squirreld console: one EventSource on /console/events, whose every
// event is the whole state (docs/monitoring.md, "The console's events");
// everything is drawn with DOM calls and textContent (never innerHTML of
// data), and nothing is fetched from anywhere but this server.
'use strict';

const $ = (s) => document.querySelector(s);
const SVG = 'http://www.w3.org/2000/svg';

function el(tag, attrs, ...kids) {
  const e = tag.startsWith('svg:') ? document.createElementNS(SVG, tag.slice(4))
                                   : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === 'class') e.setAttribute('class', v);
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k !== null && k !== undefined)
    e.append(typeof k === 'string' || typeof k === 'number' ? String(k) : k);
  return e;
}

function dur(ms) {
  if (ms === undefined || ms === null || ms < 0) return '–';
  if (ms < 1000) return ms + ' ms';
  const s = ms / 1000;
  if (s < 60) return s.toFixed(1) + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' m ' + Math.floor(s % 60) + ' s';
  return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' m';
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

// ------------------------------------------------------------ history

let history = []; // [t_ms, requests, errors, p50_us, p99_us, inflight]

function mergeHistory(h, first) {
  if (first) history = [];
  const last = history.length ? history[history.length - 1][0] : -1;
  for (const s of h) if (s[0] > last) history.push(s);
  if (history.length > 300) history = history.slice(history.length - 300);
}

function chart(svg, series, classes, unit) {
  const W = 400, H = 120, n = 300;
  let max = 0;
  for (const s of series) for (const v of s) max = Math.max(max, v);
  max = max <= 0 ? 1 : max * 1.15;
  const kids = [];
  for (let i = 1; i < 4; i++)
    kids.push(el('svg:line', {class: 'grid', x1: 0, x2: W, y1: H * i / 4, y2: H * i / 4}));
  series.forEach((s, k) => {
    const off = n - s.length;
    const pts = s.map((v, i) => ((off + i) * W / (n - 1)).toFixed(1) + ',' +
                                (H - v / max * H).toFixed(1)).join(' ');
    if (s.length) kids.push(el('svg:polyline', {class: classes[k], points: pts}));
  });
  kids.push(el('svg:text', {x: 4, y: 11}, (max / 1.15).toFixed(max < 10 ? 2 : 0) + ' ' + unit));
  kids.push(el('svg:text', {x: 4, y: H - 4}, '−5 min'));
  svg.replaceChildren(...kids);
}

// -------------------------------------------------------------- locks

// Holders on the left, the lock in the middle, waiters on the right: an
// arrow from the lock to who holds it, and from each waiter to the lock.
function lockGraph(svg, locks) {
  const shown = locks.slice(0, 12);
  const rowH = (l) => Math.max(1, l.holders.length, l.waiters.length) * 34 + 16;
  let y = 8;
  const kids = [el('svg:defs', {},
    el('svg:marker', {id: 'ah', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7,
                      markerHeight: 7, orient: 'auto-start-reverse'},
       el('svg:path', {d: 'M0,0 L10,5 L0,10 z', class: 'arrow'})),
    el('svg:marker', {id: 'aw', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7,
                      markerHeight: 7, orient: 'auto-start-reverse'},
       el('svg:path', {d: 'M0,0 L10,5 L0,10 z', class: 'arrow wait'})))];
  const W = 900, bw = 230, lx = 335, lw = 230, wx = 660;
  for (const l of shown) {
    const h = rowH(l), cy = y + h / 2;
    const g = el('svg:g', {class: 'lock' + (l.waiters.length ? ' contended' : ''),
                           'data-class': l.class || '', 'data-lock': l.lock});
    g.append(el('svg:rect', {x: lx, y: cy - 20, width: lw, height: 40, rx: 6}),
             el('svg:text', {x: lx + 10, y: cy - 3}, 'lock ' + (l.class || l.lock)),
             el('svg:text', {x: lx + 10, y: cy + 13, class: 'sub'},
                l.holders.length + ' holder' + (l.holders.length === 1 ? '' : 's') + ', ' +
                l.waiters.length + ' waiting'));
    kids.push(g);
    l.holders.forEach((hd, i) => {
      const ty = y + 8 + i * 34;
      const t = el('svg:g', {class: 'task holder', 'data-name': hd.holder || ''});
      t.append(el('svg:rect', {x: 10, y: ty, width: bw, height: 28, rx: 4}),
               el('svg:text', {x: 18, y: ty + 13}, hd.holder || '?'),
               el('svg:text', {x: 18, y: ty + 24, class: 'sub'},
                  hd.mode + ', held ' + dur(hd.age_ms)));
      kids.push(t, el('svg:path', {class: 'edge', d: `M${lx},${cy} C${lx - 50},${cy} ${bw + 60},${ty + 14} ${bw + 12},${ty + 14}`,
                                   'marker-end': 'url(#ah)'}));
    });
    l.waiters.forEach((w, i) => {
      const ty = y + 8 + i * 34;
      const t = el('svg:g', {class: 'task waiter', 'data-name': w.name || ''});
      t.append(el('svg:rect', {x: wx, y: ty, width: bw, height: 28, rx: 4}),
               el('svg:text', {x: wx + 8, y: ty + 13}, w.name || '?'),
               el('svg:text', {x: wx + 8, y: ty + 24, class: 'sub'},
                  'waits ' + dur(w.for_ms) + ' (' + w.mode + ')'));
      kids.push(t, el('svg:path', {class: 'edge wait', d: `M${wx},${ty + 14} C${wx - 50},${ty + 14} ${lx + lw + 50},${cy} ${lx + lw + 2},${cy}`,
                                   'marker-end': 'url(#aw)'}));
    });
    y += h;
  }
  svg.setAttribute('viewBox', `0 0 ${W} ${Math.max(y, 20)}`);
  svg.setAttribute('height', Math.max(y, 20));
  svg.replaceChildren(...kids);
}

// ------------------------------------------------------------- render

function render(st) {
  $('#server-name').textContent = (st.server.name === 'squirreld' ? '' : st.server.name + ' ') + st.server.version;
  const hb = $('#health');
  hb.textContent = st.health.status;
  hb.className = 'badge ' + st.health.status;
  $('#uptime').textContent = dur(st.server.uptime_s * 1000);
  $('#inflight').textContent = st.server.in_flight;
  $('#sessions-count').textContent = st.server.sessions;
  $('#tasks-count').textContent = st.tasks ? st.tasks.total : '–';

  mergeHistory(st.history || [], st.first);
  const last = history.length ? history[history.length - 1] : null;
  const lastLat = history.filter((s) => s[1] > 0).pop();
  $('#rate').textContent = last ? last[1] : '–';
  chart($('#chart-rate'), [history.map((s) => s[1]), history.map((s) => s[2])], ['rate', 'err'], '/s');
  chart($('#chart-latency'), [history.map((s) => s[3] / 1000), history.map((s) => s[4] / 1000)],
        ['p50', 'p99'], 'ms');
  $('#lat-now').textContent = lastLat ? ` latest: p50 ${(lastLat[3] / 1000).toFixed(2)} ms, p99 ${(lastLat[4] / 1000).toFixed(2)} ms` : '';

  // alerts
  const firing = st.alerts.filter((a) => a.state === 'firing');
  $('#alerts-count').textContent = st.alerts.length ? `${firing.length} firing of ${st.alerts.length}` : 'no rules';
  $('#alerts').replaceChildren(...st.alerts.map((a) =>
    el('div', {class: 'alert ' + a.state, 'data-alert': a.name, 'data-state': a.state},
       el('b', {}, a.name), el('span', {}, a.state),
       el('span', {}, `${a.metric} ${a.op} ${a.threshold}` + (a.rate ? ' (per second)' : '')),
       el('span', {}, 'now ' + (a.value === null ? '–' : +a.value.toFixed(3))),
       a.since_ms ? el('span', {}, 'since ' + new Date(a.since_ms).toLocaleTimeString()) : null)));

  // locks and cycles
  const locks = st.locks || [];
  $('#locks-note').hidden = st.checks_on;
  $('#locks-count').textContent = locks.length + ' held or wanted';
  $('#cycles').replaceChildren(...(st.cycles || []).map((c) =>
    el('div', {class: 'cycle'}, '⚠ deadlock: ' + c.map((s) => `${s.name} waits for ${s.class}`).join(' → ') + ' → back to the first')));
  lockGraph($('#lock-graph'), locks);

  // tasks
  if (st.tasks) {
    $('#task-states').textContent = Object.entries(st.tasks.states).map(([k, v]) => `${v} ${k}`).join(', ') +
      (st.tasks.list.length < st.tasks.total ? ` (showing ${st.tasks.list.length})` : '');
    fill($('#tasks-table tbody'), st.tasks.list.map((t) =>
      el('tr', {class: (t.wants ? 'lockwait ' : '') + (t.holds.length ? 'holding' : ''), 'data-name': t.name || '',
                'data-state': t.state, 'data-wait': t.wait},
         el('td', {}, t.id), el('td', {}, t.name || ''), el('td', {class: 'state-' + t.state}, t.state),
         el('td', {}, t.wait === 'none' ? '' : t.wait), el('td', {}, t.wait === 'none' ? '' : dur(t.for_ms)),
         el('td', {}, t.holds.map((h) => h.class).join(', ')),
         el('td', {}, t.wants ? t.wants.class : ''))));
  }

  // requests in flight, sessions, health, sources
  $('#requests-count').textContent = st.requests.total;
  fill($('#requests-table tbody'), st.requests.list.map((r) =>
    el('tr', {}, el('td', {}, r.method), el('td', {}, r.id), el('td', {}, r.session), el('td', {}, dur(r.age_ms)))));
  fill($('#sessions-table tbody'), st.sessions.map((s) =>
    el('tr', {}, el('td', {}, s.id), el('td', {}, s.version), el('td', {}, dur(s.age_s * 1000)),
       el('td', {}, dur(s.idle_s * 1000)), el('td', {}, s.in_flight))));
  fill($('#health-table tbody'), st.health.components.map((c) =>
    el('tr', {'data-component': c.name}, el('td', {}, c.name), el('td', {class: 'badge ' + c.status}, c.status),
       el('td', {class: 'wrap'}, c.reason))));
  $('#sources-note').hidden = st.sources.length > 0;
  fill($('#sources-table tbody'), st.sources.map((s) =>
    el('tr', {}, el('td', {}, s.name), el('td', {}, Object.entries(s.labels).map(([k, v]) => `${k}=${v}`).join(' ')),
       el('td', {}, +s.value.toFixed(3)))));
  document.body.dataset.updated = String(Date.now());
}

// ------------------------------------------------------------ connect

function connect() {
  $('#login').hidden = true;
  $('#main').hidden = false;
  const es = new EventSource('/console/events');
  const conn = $('#conn');
  es.onopen = () => { conn.textContent = 'live'; conn.className = 'conn live'; };
  es.onmessage = (e) => {
    conn.textContent = 'live'; conn.className = 'conn live';
    render(JSON.parse(e.data));
  };
  es.onerror = () => { conn.textContent = 'reconnecting'; conn.className = 'conn down'; };
}

async function start() {
  const r = await fetch('/health', {credentials: 'same-origin', cache: 'no-store'});
  if (r.status === 401) {
    $('#login').hidden = false;
    $('#main').hidden = true;
    $('#conn').textContent = 'needs the token';
    return;
  }
  connect();
}

$('#login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const tok = $('#token').value.trim();
  document.cookie = 'squirreld_token=' + encodeURIComponent(tok) + '; path=/; SameSite=Strict';
  const r = await fetch('/health', {credentials: 'same-origin', cache: 'no-store'});
  if (r.status === 401) { $('#login-error').textContent = 'That token was refused.'; return; }
  connect();
});

start();
