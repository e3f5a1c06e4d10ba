// ui.js: page helpers shared by the agent and supervisor pages (DOM, the
// event log, the webhook feed, tokens). The protocol itself is in rtm.js.

import { RTMClient } from './rtm.js';

export const $ = (sel, root = document) => root.querySelector(sel);

/** Creates an element: el('li', {class: 'x'}, 'text', child...). */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v == null) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  e.append(...children.filter((c) => c != null));
  return e;
}

/** Shows a state in a badge; CSS colours it by data-state. */
export function setBadge(node, state) {
  node.textContent = state || '—';
  node.dataset.state = state || '';
}

/**
 * Opens the RTM WebSocket for a role. With auth on, the dev server issues a
 * token (GET /dev/token) and it goes in ?access_token=, since browsers
 * cannot set headers on a WebSocket.
 */
export async function connectRTM(role) {
  const res = await fetch(`/dev/token?role=${role}`);
  if (!res.ok) throw new Error(`token: ${res.status} ${(await res.text()).trim()}`);
  const { token } = await res.json();
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  let url = `${scheme}://${location.host}/rtm`;
  if (token) url += `?access_token=${encodeURIComponent(token)}`;
  const client = new RTMClient(url);
  await client.connect();
  return client;
}

/**
 * A message box (the error box, or a notice box for what ended normally):
 * messages stay until the next action clears them; each is also kept in
 * window.consoleState[key] for the tests.
 */
export function messageBox(node, key = 'errors') {
  return {
    show(text) {
      node.hidden = false;
      node.append(el('div', {}, `${clock()}  ${text}`));
      window.consoleState?.[key]?.push(text);
    },
    clear() {
      node.hidden = true;
      node.replaceChildren();
    },
  };
}

/** The error box. */
export const errorBox = (node) => messageBox(node, 'errors');

/** A clock time with milliseconds, as the message log and webhook panel show it. */
export function clock(t = new Date()) {
  return `${t.toLocaleTimeString([], { hour12: false })}.${String(t.getMilliseconds()).padStart(3, '0')}`;
}

/** A scrolling log of RTM messages, newest at the bottom, bounded; each with the time it was sent or received. */
export function messageLog(node, max = 300) {
  return (dir, msg) => {
    const data = msg.data ?? {};
    let summary = '';
    if (data.sdp) summary = `${data.sdp.type}, ${data.sdp.sdp.split('\nm=').length - 1} m-lines`;
    else if (data.candidate) summary = data.candidate.candidate === '' ? '(end of candidates)' : data.candidate.candidate.split(' ').slice(4, 8).join(' ');
    else summary = JSON.stringify(data);
    if (summary.length > 160) summary = summary.slice(0, 157) + '...';
    const stick = node.scrollTop + node.clientHeight >= node.scrollHeight - 4;
    node.append(
      el('div', { class: `msg ${dir}`, 'data-session': msg.session_id || null, title: msg.session_id ? `session ${msg.session_id}` : null },
        el('time', {}, clock()),
        el('span', { class: 'dir' }, dir === 'out' ? '→' : '←'),
        el('span', { class: 'type' }, msg.type),
        el('span', { class: 'sum' }, summary)),
    );
    while (node.childElementCount > max) node.firstElementChild.remove();
    if (stick) node.scrollTop = node.scrollHeight;
  };
}

// What the webhook panel says of a signature (the sink's "signed").
const signatureLabel = {
  verified: ['signed ✓', 'the signature verified with the server\'s webhook secret'],
  invalid: ['signed ✗', 'the signature did not verify'],
  unsigned: ['unsigned', 'the server has no webhook secret'],
  unchecked: ['signed ?', 'the sink has no secret to check it with'],
};

/**
 * Follows the dev webhook sink live (Server-Sent Events), newest on top,
 * showing the events of this page's own sessions only: mine(sessionId)
 * says which. Events that arrive before the page knows its session are
 * kept and shown by refresh(), which the page calls when mine changes.
 */
export function followWebhooks(node, { mine, max = 100, onEvent } = {}) {
  const seen = []; // every event received, oldest first, bounded
  const row = (hook) => {
    const b = hook.body ?? {};
    const d = b.data ?? {};
    const what = [d.state, d.termination_cause, d.recording_id && `rec ${d.recording_id}`, d.reason].filter(Boolean).join(' · ');
    const [label, title] = signatureLabel[hook.signed] ?? ['?', ''];
    return el('li', { 'data-seq': hook.seq, 'data-signed': hook.signed },
      el('time', {}, clock(new Date(hook.received_at))),
      el('span', { class: 'type' }, b.type ?? '?'),
      el('span', { class: 'sid', title: b.session_id }, b.session_id ?? ''),
      el('span', { class: 'sig', title: hook.signature_error ? `${title}: ${hook.signature_error}` : title }, label),
      el('span', { class: 'sum' }, what));
  };
  const isMine = (hook) => !mine || mine(hook.body?.session_id);
  const es = new EventSource('/dev/webhooks/stream');
  es.addEventListener('webhook', (ev) => {
    const hook = JSON.parse(ev.data);
    seen.push(hook);
    if (seen.length > 10 * max) seen.shift();
    if (!isMine(hook)) return;
    node.prepend(row(hook));
    while (node.childElementCount > max) node.lastElementChild.remove();
    onEvent?.(hook);
  });
  return {
    close: () => es.close(),
    refresh() {
      node.replaceChildren(...seen.filter(isMine).slice(-max).reverse().map(row));
    },
  };
}

/** Formats a byte count. */
export function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}

/**
 * Drives a <meter> with the level of a stream's audio (Web Audio). Returns a
 * function that stops it.
 */
export function levelMeter(stream, meter) {
  if (!stream.getAudioTracks().length) return () => {};
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 1024;
  ctx.createMediaStreamSource(stream).connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  const timer = setInterval(() => {
    analyser.getFloatTimeDomainData(buf);
    let peak = 0;
    for (const v of buf) peak = Math.max(peak, Math.abs(v));
    meter.value = peak;
  }, 100);
  return () => {
    clearInterval(timer);
    meter.value = 0;
    ctx.close();
  };
}
