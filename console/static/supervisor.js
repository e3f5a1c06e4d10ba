// supervisor.js: the supervisor page. Lists the active sessions, joins one
// with supervisor_join_session (recvonly transceivers), plays what it
// receives and answers the server's sdp_update offers (rtm.js does that
// part) when the monitored session gains a track.

import { $, el, setBadge, connectRTM, errorBox, messageBox, messageLog, followWebhooks, levelMeter } from './ui.js';
import { randomId } from './rtm.js';

// For the DevTools console and the end-to-end tests.
const state = {
  monitoredId: '',
  sessionState: '',
  terminationCause: '',
  connectMs: null,
  sessionIds: [], // this page's own supervisor sessions: the webhook panel shows theirs
  errors: [],
  notices: [], // what ended normally (the monitored call)
  stats: null,
};
window.consoleState = state;

const errors = errorBox($('#errors'));
const notices = messageBox($('#notices'), 'notices');
const log = messageLog($('#log'));

let client = null;
let session = null;
let stopMeter = () => {};
let statsTimer = 0;

// Sessions ---------------------------------------------------------------

// Rows by session id, updated in place, so that a Join button does not
// vanish under a click when the list is read again.
const rows = new Map();

async function refreshSessions() {
  let list;
  try {
    const res = await fetch('/dev/sessions');
    list = await res.json();
  } catch {
    return; // the server is restarting; try again on the next tick
  }
  const busy = !!(session && !session.ended);
  const live = list.filter((s) => !s.supervisor && s.state !== 'TERMINATED');
  for (const id of rows.keys()) {
    if (!live.some((s) => s.session_id === id)) rows.delete(id);
  }
  for (const s of live) {
    let row = rows.get(s.session_id);
    if (!row) {
      const button = el('button', { class: 'join primary small' }, 'Join');
      row = { tr: el('tr', { 'data-session': s.session_id }), cells: [0, 1, 2, 3, 4].map(() => el('td')), button };
      row.tr.append(...row.cells, el('td', {}, button));
      rows.set(s.session_id, row);
    }
    row.info = s;
    row.button.onclick = () => join(row.info);
    const tracks = (s.tracks ?? []).map((t) => `${t.kind}/${t.codec} (${t.packets} pkts)`).join(', ') || '—';
    const joined = busy && state.monitoredId === s.session_id;
    row.cells[0].replaceChildren(el('code', {}, s.session_id));
    row.cells[1].replaceChildren(s.client_id ?? '');
    row.cells[2].replaceChildren(el('span', { class: 'badge', 'data-state': s.state }, s.state));
    row.cells[3].className = 'tracks';
    row.cells[3].replaceChildren(tracks);
    row.cells[4].replaceChildren(s.recording_id ? el('code', {}, s.recording_id) : '—');
    row.button.disabled = busy;
    row.button.textContent = joined ? 'Joined' : 'Join';
  }
  const trs = live.map((s) => rows.get(s.session_id).tr);
  const tbody = $('#sessions');
  if (!trs.length) tbody.replaceChildren(el('tr', {}, el('td', { colspan: 6, class: 'empty' }, 'No sessions.')));
  else if (trs.some((tr, i) => tbody.children[i] !== tr) || tbody.children.length !== trs.length) tbody.replaceChildren(...trs);
}

// Joining ----------------------------------------------------------------

// Joins a session. A session that ended since the list was read is
// refused (session_not_found): join() rejects with that one error, and the
// refused session has already closed its peer connection and sends
// nothing more, so another session can be joined at once.
async function join(info) {
  errors.clear();
  notices.clear();
  const t0 = performance.now();
  state.connectMs = null;
  state.sessionState = '';
  state.terminationCause = '';
  $('#termination-cause').textContent = '';
  setBadge($('#session-state'), '');
  $('#remote').replaceChildren();
  try {
    if (!client?.connected) {
      client = await connectRTM('supervisor');
      client.on('message', (m) => log('in', m));
      client.on('sent', (m) => log('out', m));
      // Errors that concern no session of the page.
      client.on('error', (m) => errors.show(`${m.data.code}: ${m.data.message}`));
    }
    // One recvonly transceiver per track the session has now; tracks it
    // gains later come with a server offer.
    const count = (kind) => Math.max(kind === 'audio' ? 1 : 0, (info.tracks ?? []).filter((t) => t.kind === kind).length);
    const id = randomId('sup-');
    state.sessionIds.push(id);
    hooks.refresh();
    state.monitoredId = info.session_id;
    $('#monitored-id').textContent = info.session_id;
    $('#supervisor-id').textContent = id;
    await client.join(info.session_id, {
      sessionId: id,
      audio: count('audio'),
      video: count('video'),
      webhookUrl: `${location.origin}/dev/webhooks`,
      onSession: (s) => {
        session = s;
        watch(s, t0);
      },
    });
  } catch (err) {
    state.monitoredId = '';
    errors.show(`cannot join ${info.session_id}: ${err.message}`);
  }
  refreshSessions();
  refreshButtons();
}

function watch(s, t0) {
  const audioStream = new MediaStream();
  s.on('track', (ev) => {
    const track = ev.track;
    if (track.kind === 'audio') {
      audioStream.addTrack(track);
      const audio = el('audio', { autoplay: true });
      audio.srcObject = new MediaStream([track]);
      $('#remote').append(audio);
      stopMeter();
      stopMeter = levelMeter(audioStream, $('#audio-level'));
      return;
    }
    const video = el('video', { autoplay: true, playsinline: true, muted: true });
    video.srcObject = new MediaStream([track]);
    const fig = el('figure', {}, video, el('figcaption', {}, `video ${document.querySelectorAll('#remote figure').length + 1}`));
    $('#remote').append(fig);
    track.addEventListener('ended', () => fig.remove());
    // A transceiver the server stops using mutes its track.
    track.addEventListener('mute', () => fig.classList.add('muted'));
    track.addEventListener('unmute', () => fig.classList.remove('muted'));
  });
  s.on('session_state', (d) => {
    state.sessionState = d.state;
    setBadge($('#session-state'), d.state);
    if (d.state === 'CONNECTED' && state.connectMs == null) {
      state.connectMs = Math.round(performance.now() - t0);
      $('#connect-ms').textContent = `${state.connectMs} ms`;
    }
    if (d.termination_cause) {
      state.terminationCause = d.termination_cause;
      $('#termination-cause').textContent = d.termination_cause;
      // The call being over is how monitoring normally ends, not an error.
      if (d.termination_cause === 'TERM_BY_MONITORED_SESSION_END') notices.show(`The monitored call ${state.monitoredId} ended, and monitoring with it.`);
      else if (d.termination_cause !== 'TERM_BY_CLIENT') errors.show(`monitoring ended: ${d.termination_cause}${d.reason ? ` (${d.reason})` : ''}`);
    }
    refreshButtons();
  });
  // Errors that answer no request of the page (a renegotiation's).
  s.on('error', (d) => errors.show(`${d.code}: ${d.message}${d.request_type ? ` (in reply to ${d.request_type})` : ''}`));
  s.on('ended', (info) => {
    if (info.cause === 'WEBSOCKET_CLOSED' || info.cause === 'REFUSED') {
      state.sessionState = info.cause === 'REFUSED' ? 'REFUSED' : 'TERMINATED';
      setBadge($('#session-state'), state.sessionState);
      $('#termination-cause').textContent = info.cause === 'REFUSED' ? info.reason : 'WebSocket closed';
    }
    stopMeter();
    clearInterval(statsTimer);
    refreshButtons();
    refreshSessions();
  });
  clearInterval(statsTimer);
  statsTimer = setInterval(() => updateStats(s), 1000);
  refreshButtons();
}

// What arrives, from WebRTC's own statistics (the tests read state.stats).
async function updateStats(s) {
  if (s.ended) return;
  const report = await s.pc.getStats();
  const out = { audio: null, video: [] };
  report.forEach((r) => {
    if (r.type !== 'inbound-rtp') return;
    if (r.kind === 'audio') {
      out.audio = { packetsReceived: r.packetsReceived, audioLevel: r.audioLevel ?? 0, totalAudioEnergy: r.totalAudioEnergy ?? 0 };
    } else {
      out.video.push({ packetsReceived: r.packetsReceived, framesDecoded: r.framesDecoded ?? 0, frameWidth: r.frameWidth, frameHeight: r.frameHeight });
    }
  });
  state.stats = out;
  const a = out.audio ? `audio ${out.audio.packetsReceived} pkts, level ${out.audio.audioLevel.toFixed(3)}` : 'no audio';
  const v = out.video.map((x) => `video ${x.packetsReceived} pkts, ${x.framesDecoded} frames${x.frameWidth ? ` ${x.frameWidth}×${x.frameHeight}` : ''}`);
  $('#stats').textContent = [a, ...v].join(' · ');
}

function refreshButtons() {
  $('#leave').disabled = !session || session.ended;
}

// Leaving ends only the supervisor session (TERM_BY_CLIENT); the monitored
// session and its recording go on.
$('#leave').addEventListener('click', () => {
  session?.stop().catch((err) => errors.show(`session_stop: ${err.message}`));
});

const hooks = followWebhooks($('#webhooks'), { mine: (id) => state.sessionIds.includes(id) });
refreshSessions();
setInterval(refreshSessions, 2000);
refreshButtons();
