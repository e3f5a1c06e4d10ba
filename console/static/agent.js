// agent.js: the agent page. Captures microphone, camera and/or screen,
// starts an RTM session and records it, by default into the dev upload
// sink, and shows how the upload goes (GET /dev/recordings/{id}).

import { $, el, setBadge, connectRTM, errorBox, messageLog, followWebhooks, bytes, levelMeter } from './ui.js';
import { randomId } from './rtm.js';
import { player } from './playback.js';

// What the page knows, for people in the DevTools console and for the
// end-to-end tests (integration/browser), which read it instead of
// scraping text.
const state = {
  sessionId: '',
  sessionIds: [], // every session this page started: the webhook panel shows theirs
  sessionState: '',
  terminationCause: '',
  connectMs: null, // click on "Start session" → CONNECTED, the page's own clock
  timings: {},
  recordingId: '',
  recordingState: '', // of the recording the page shows: REQUESTED, STARTED, PAUSED, RESUMED, UPLOADING, STOPPED, FAILED
  recordings: [], // one entry per recording_start of this page
  errors: [],
};
window.consoleState = state;

const errors = errorBox($('#errors'));
const log = messageLog($('#log'));
const origin = location.origin;

let client = null; // RTMClient, kept across sessions of this page
let session = null; // RTMSession
let localStream = null;
let stopMeter = () => {};
let current = null; // the entry of state.recordings the Recording card shows
let elapsedTimer = 0;

const buttons = {
  start: $('#start-session'),
  share: $('#share-screen'),
  stop: $('#stop-session'),
  recStart: $('#rec-start'),
  recPause: $('#rec-pause'),
  recResume: $('#rec-resume'),
  recStop: $('#rec-stop'),
};

const running = (r) => ['STARTED', 'PAUSED', 'RESUMED'].includes(r?.state);
const decided = (r) => ['STOPPED', 'FAILED', 'REFUSED'].includes(r?.state);

// Enables what the real states allow: nothing to pause once the recording
// is stopped and uploading, a new recording once the server took the stop.
function refreshButtons() {
  const live = session && !session.ended;
  const connected = live && state.sessionState === 'CONNECTED';
  const rec = current?.state;
  buttons.start.disabled = !!live;
  buttons.stop.disabled = !live;
  buttons.share.disabled = !connected || hasScreen();
  buttons.recStart.disabled = !connected || running(current) || rec === 'REQUESTED';
  buttons.recPause.disabled = !connected || !(rec === 'STARTED' || rec === 'RESUMED');
  buttons.recResume.disabled = !connected || rec !== 'PAUSED';
  buttons.recStop.disabled = !live || !running(current);
}

function hasScreen() {
  return !!localStream?.getVideoTracks().some((t) => t.label.toLowerCase().includes('screen') || t.getSettings().displaySurface);
}

function addPreview(stream, label) {
  const video = el('video', { autoplay: true, muted: true, playsinline: true });
  video.srcObject = stream;
  const fig = el('figure', {}, video, el('figcaption', {}, label));
  $('#previews').append(fig);
  return fig;
}

// getUserMedia for microphone and camera, getDisplayMedia for the screen.
// Audio processing is off: the recording should hold what the microphone
// hears (and the tests check a pure tone).
async function capture() {
  if (!navigator.mediaDevices) throw new Error('media devices are only available on https:// or http://localhost pages');
  const wantMic = $('#use-mic').checked;
  const wantCam = $('#use-cam').checked;
  const wantScreen = $('#use-screen').checked;
  if (!wantMic && !wantCam && !wantScreen) throw new Error('choose at least one of microphone, camera and screen');
  const stream = new MediaStream();
  if (wantMic || wantCam) {
    const s = await navigator.mediaDevices.getUserMedia({
      audio: wantMic && { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      video: wantCam && { width: 640, height: 480 },
    });
    s.getTracks().forEach((t) => stream.addTrack(t));
    if (wantCam) addPreview(new MediaStream(s.getVideoTracks()), 'camera');
  }
  if (wantScreen) {
    const s = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    s.getTracks().forEach((t) => stream.addTrack(t));
    const fig = addPreview(s, 'screen');
    s.getVideoTracks()[0].addEventListener('ended', () => fig.remove());
  }
  return stream;
}

async function ensureClient() {
  if (client?.connected) return client;
  client = await connectRTM('client');
  client.on('message', (m) => log('in', m));
  client.on('sent', (m) => log('out', m));
  // Errors that concern no session of the page (a malformed frame, a rate limit).
  client.on('error', (m) => errors.show(`${m.data.code}: ${m.data.message}`));
  client.on('close', (ev) => {
    if (ev.code !== 1000) errors.show(`WebSocket closed (code ${ev.code}${ev.reason ? `, ${ev.reason}` : ''})`);
    refreshButtons();
  });
  return client;
}

// Where the page sends things: the fields, or this server's sinks.
const webhookTarget = () => $('#webhook-url').value.trim() || `${origin}/dev/webhooks`;

function uploadTarget(name) {
  const v = $('#upload-url').value.trim();
  if (!v) return `${origin}/dev/uploads/${name}`;
  return v.endsWith('/') ? v + name : v;
}

// A URL as the page shows it: a pre-signed URL's query is a credential.
const withoutQuery = (u) => (u.includes('?') ? `${u.split('?')[0]}?…` : u);

buttons.start.addEventListener('click', async () => {
  errors.clear();
  const t0 = performance.now();
  state.connectMs = null;
  state.terminationCause = '';
  $('#termination-cause').textContent = '';
  $('#connect-ms').textContent = '…';
  buttons.start.disabled = true;
  try {
    localStream = await capture();
    const tMedia = performance.now();
    await ensureClient();
    const tWS = performance.now();
    const id = randomId('s-');
    state.sessionIds.push(id);
    hooks.refresh();
    state.timings = { media_ms: Math.round(tMedia - t0), websocket_ms: Math.round(tWS - tMedia) };
    session = await client.startSession(localStream, {
      sessionId: id,
      webhookUrl: webhookTarget(),
      videoCodec: $('#video-codec').value || undefined,
      onSession: (s) => {
        session = s;
        state.sessionId = s.id;
        $('#session-id').textContent = s.id;
        watchSession(s, t0);
      },
    });
    stopMeter = levelMeter(localStream, $('#mic-level'));
  } catch (err) {
    errors.show(err.requestType ? `${err.requestType} refused: ${err.message}` : err.message);
    endLocalMedia();
  }
  refreshButtons();
});

function watchSession(s, t0) {
  s.on('session_state', (d) => {
    state.sessionState = d.state;
    setBadge($('#session-state'), d.state);
    if (d.state === 'CONNECTED' && state.connectMs == null) {
      state.connectMs = Math.round(performance.now() - t0);
      const t = state.timings;
      $('#connect-ms').textContent = `${state.connectMs} ms (media ${t.media_ms} ms, WebSocket ${t.websocket_ms} ms, offer → CONNECTED ${state.connectMs - t.media_ms - t.websocket_ms} ms)`;
    }
    if (d.termination_cause) {
      state.terminationCause = d.termination_cause;
      $('#termination-cause').textContent = d.termination_cause + (d.reason ? ` (${d.reason})` : '');
      if (d.termination_cause !== 'TERM_BY_CLIENT') errors.show(`session ended: ${d.termination_cause}${d.reason ? ` (${d.reason})` : ''}`);
    }
    refreshButtons();
  });
  s.on('recording_state', onRecordingState);
  // Errors that answer no request of the page (a renegotiation's).
  s.on('error', (d) => {
    errors.show(`${d.code}: ${d.message}${d.request_type ? ` (in reply to ${d.request_type})` : ''}`);
    refreshButtons();
  });
  s.on('ended', (info) => {
    if (info.cause === 'WEBSOCKET_CLOSED' || info.cause === 'REFUSED') {
      state.sessionState = info.cause === 'REFUSED' ? 'REFUSED' : 'TERMINATED';
      setBadge($('#session-state'), state.sessionState);
      $('#termination-cause').textContent = info.cause === 'REFUSED' ? info.reason : 'WebSocket closed';
    }
    // A recording running when the session ended is finished and uploaded.
    for (const r of state.recordings) {
      if (running(r)) uploading(r);
    }
    endLocalMedia();
    refreshButtons();
  });
}

function endLocalMedia() {
  stopMeter();
  localStream?.getTracks().forEach((t) => t.stop());
  localStream = null;
  $('#previews').replaceChildren();
}

buttons.stop.addEventListener('click', () => {
  errors.clear();
  session?.stop().catch((err) => errors.show(`session_stop: ${err.message}`));
});

// A screen share added mid-call: the track is added to the peer connection
// and rtm.js renegotiates with an sdp_update offer.
buttons.share.addEventListener('click', async () => {
  try {
    const s = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    const track = s.getVideoTracks()[0];
    localStream.addTrack(track);
    session.addTrack(track, s);
    const fig = addPreview(s, 'screen');
    track.addEventListener('ended', () => {
      fig.remove();
      localStream?.removeTrack(track);
      session?.removeTrack(track);
      refreshButtons();
    });
  } catch (err) {
    errors.show(`screen share: ${err.message}`);
  }
  refreshButtons();
});

// Recording ----------------------------------------------------------------

// The upload is named after the format the server will write, which the
// negotiated codecs decide (Matroska for H.264, WebM for other video, Ogg
// for audio only) unless one is chosen; the format is also asked for
// explicitly, so name and content always agree.
function uploadName(sessionId, format) {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  return `${sessionId}-${stamp}.${format}`;
}

// Shows r in the Recording card.
function show(r) {
  current = r;
  state.recordingId = r.recording_id ?? '';
  state.recordingState = r.state;
  $('#recording-id').textContent = r.recording_id ?? '…';
  setBadge($('#recording-state'), r.state);
  $('#upload-target').textContent = r.upload_target;
  renderDetail(r);
  refreshButtons();
}

buttons.recStart.addEventListener('click', async () => {
  errors.clear();
  let format;
  try {
    format = $('#format').value || session.recordingFormat();
  } catch (err) {
    errors.show(err.message);
    return;
  }
  const name = uploadName(session.id, format);
  const target = uploadTarget(name);
  const r = { upload_name: name, upload_target: withoutQuery(target), format, state: 'REQUESTED', start_click: performance.now(), pauses: [], retries: [] };
  state.recordings.push(r);
  clearInterval(elapsedTimer);
  $('#rec-elapsed').textContent = '—';
  show(r);
  try {
    await session.startRecording({ uploadUrl: target, webhookUrl: webhookTarget(), format, pauseMode: $('#pause-mode').value });
  } catch (err) {
    r.state = 'REFUSED';
    r.reason = err.message;
    errors.show(`recording_start refused: ${err.message}`);
    if (r === current) show(r);
  }
});

buttons.recPause.addEventListener('click', () => {
  const r = current;
  r.pauses.push({ pause_click: performance.now() });
  session.pauseRecording().catch((err) => errors.show(`recording_pause refused: ${err.message}`));
});

buttons.recResume.addEventListener('click', () => {
  const p = current.pauses.at(-1);
  if (p) p.resume_click = performance.now();
  session.resumeRecording().catch((err) => errors.show(`recording_resume refused: ${err.message}`));
});

buttons.recStop.addEventListener('click', () => {
  const r = current;
  r.stop_click = performance.now();
  uploading(r);
  // Resolves with the outcome, which onRecordingState shows. A refusal
  // means the recording had already stopped (with its session): its upload
  // is under way all the same.
  session.stopRecording().catch((err) => errors.show(`recording_stop: ${err.message}`));
});

// The recording is stopped (by the button, or with its session): the file is
// being finished and uploaded until STOPPED or FAILED.
function uploading(r) {
  r.state = 'UPLOADING';
  if (r === current) {
    clearInterval(elapsedTimer); // Elapsed ends where the recording did
    show(r);
  }
  watchUpload(r);
}

// Follows an upload through the dev status endpoint, for its attempts, the
// next retry and the last reason (r.retries keeps every failed attempt
// seen), until the outcome is known, or the server has no journey left
// for it (uploaded, and its copy removed).
async function watchUpload(r) {
  if (r.watching) return;
  r.watching = true;
  while (!decided(r) && !r.gone) {
    if (r.recording_id) await readProgress(r);
    if (r === current) renderDetail(r);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  r.watching = false;
}

async function readProgress(r) {
  try {
    const res = await fetch(`/dev/recordings/${encodeURIComponent(r.recording_id)}`);
    if (res.status === 404) r.gone = !!r.upload;
    if (!res.ok) return;
    const p = await res.json();
    r.upload = p;
    if (p.reason && p.next_attempt && !r.retries.some((x) => x.attempt === p.attempts)) {
      r.retries.push({ attempt: p.attempts, reason: p.reason, status: p.last_status, retry_in_ms: Date.parse(p.next_attempt) - Date.now() });
    }
  } catch {
    // the server is restarting; the next poll tells
  }
}

const seconds = (ms) => `${(Math.max(0, ms) / 1000).toFixed(1)} s`;

// What the card says of the recording beyond its state.
function renderDetail(r) {
  let detail = '';
  let upload = '—';
  const p = r.upload;
  switch (r.state) {
    case 'STOPPED':
      detail = `${r.format ?? ''} · ${((r.duration_ms ?? 0) / 1000).toFixed(1)} s · ${bytes(r.size_bytes ?? 0)}`;
      upload = `uploaded${r.stop_to_decided_ms != null ? ` ${r.stop_to_decided_ms} ms after the stop` : ''}${p?.attempts > 1 ? `, at attempt ${p.attempts}` : ''}`;
      break;
    case 'FAILED':
      detail = r.reason ?? 'no reason given';
      upload = p?.file ? `the server keeps the file at ${p.file}` : 'the server keeps the file in its data directory';
      break;
    case 'REFUSED':
      detail = r.reason;
      break;
    case 'UPLOADING':
      if (r.gone) upload = 'uploaded (the server removed its copy); waiting for STOPPED';
      else if (!p || p.state === 'recording') upload = 'finishing the file';
      else if (p.state === 'failed') upload = `failed: ${p.reason}`;
      else if (p.reason && p.next_attempt && Date.parse(p.next_attempt) > Date.now()) {
        upload = `attempt ${p.attempts} of ${p.max_attempts} failed: ${p.reason}; next attempt in ${seconds(Date.parse(p.next_attempt) - Date.now())}`;
      } else {
        upload = `attempt ${Math.max(p.attempts, 1)} of ${p.max_attempts} in progress${p.reason ? ` (the last one failed: ${p.reason})` : ''}`;
      }
      break;
  }
  $('#recording-detail').textContent = detail;
  $('#upload-status').textContent = upload;
}

function onRecordingState(d) {
  // STOPPED/FAILED may concern a recording that ended with its session.
  const r = state.recordings.find((x) => x.recording_id === d.recording_id) ?? state.recordings.find((x) => !x.recording_id && x.state === 'REQUESTED');
  if (!r) return;
  r.recording_id = d.recording_id;
  Object.assign(r, { format: d.format ?? r.format, duration_ms: d.duration_ms, size_bytes: d.size_bytes, reason: d.reason });
  if (d.state === 'STOPPED' || d.state === 'FAILED') {
    r.decided = performance.now();
    // Without a click (the session ended), there is no stop to count from.
    if (r.stop_click) r.stop_to_decided_ms = Math.round(r.decided - r.stop_click);
  }
  r.state = d.state;
  if (d.state === 'STARTED' && r === current) {
    const t0 = r.start_click;
    elapsedTimer = setInterval(() => {
      $('#rec-elapsed').textContent = `${((performance.now() - t0) / 1000).toFixed(1)} s`;
    }, 200);
  }
  if (d.state === 'FAILED') {
    errors.show(`recording ${d.recording_id} FAILED: ${d.reason ?? 'no reason given'}`);
    // Where the file is kept.
    readProgress(r).then(() => r === current && renderDetail(r));
  }
  if (d.state === 'STOPPED') refreshRecordings();
  if (r === current) show(r);
}

// Finished recordings, from the dev upload sink ---------------------------------

const players = new Map(); // upload name → its list item, kept across refreshes

async function refreshRecordings() {
  try {
    const res = await fetch('/dev/uploads');
    const list = await res.json();
    const ul = $('#recordings');
    if (!list.length) {
      ul.replaceChildren(el('li', { class: 'empty' }, 'No recordings yet.'));
      return;
    }
    ul.replaceChildren(
      ...list.slice(0, 12).map((u) => {
        let li = players.get(u.name);
        if (!li) {
          const mine = state.recordings.some((r) => r.upload_name === u.name);
          li = el('li', { class: mine ? 'mine' : null, 'data-name': u.name },
            player(u),
            el('div', { class: 'meta' },
              el('a', { href: u.url, download: u.name }, u.name),
              el('span', {}, `${u.content_type} · ${bytes(u.size)} · ${new Date(u.mod_time).toLocaleTimeString()}`)));
          players.set(u.name, li);
        }
        return li;
      }),
    );
  } catch (err) {
    errors.show(`listing recordings: ${err.message}`);
  }
}

$('#refresh-recordings').addEventListener('click', refreshRecordings);
const hooks = followWebhooks($('#webhooks'), { mine: (id) => state.sessionIds.includes(id) });

// The dev secret the server signs with, to try a receiver of one's own.
fetch('/dev/config').then((r) => r.json()).then((c) => {
  const hint = $('#webhook-secret-hint');
  hint.hidden = false;
  if (c.webhook_secret) {
    hint.append('Signed with the secret -dev made at start, ', el('code', {}, c.webhook_secret),
      '; the sink checks each signature with it (signed ✓ or ✗).');
  } else {
    hint.append(c.webhooks_signed ? 'Signed with the server\'s -webhook-secret; the sink checks each signature.' : 'The server has no webhook secret: events are unsigned.');
  }
}).catch(() => {});
refreshRecordings();
refreshButtons();
