// agent.js: the agent page. Captures microphone, camera and/or screen,
// starts an RTM session and records it into the dev upload sink.

import { $, el, setBadge, connectRTM, errorBox, messageLog, followWebhooks, bytes, levelMeter } from './ui.js';

// What the page knows, for people in the DevTools console and for the
// end-to-end tests (integration/browser), which read it instead of
// scraping text.
const state = {
  sessionId: '',
  sessionState: '',
  terminationCause: '',
  connectMs: null, // click on "Start session" → CONNECTED, the page's own clock
  timings: {},
  recordingId: '',
  recordingState: '',
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
let current = null; // entry of state.recordings being recorded
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

// Enables what makes sense in the current states.
function refreshButtons() {
  const live = session && !session.ended;
  const connected = live && state.sessionState === 'CONNECTED';
  const rec = state.recordingState;
  const recording = current && ['REQUESTED', 'STARTED', 'PAUSED', 'RESUMED'].includes(rec);
  buttons.start.disabled = !!live;
  buttons.stop.disabled = !live;
  buttons.share.disabled = !connected || hasScreen();
  buttons.recStart.disabled = !connected || !!current;
  buttons.recPause.disabled = !connected || !(rec === 'STARTED' || rec === 'RESUMED');
  buttons.recResume.disabled = !connected || rec !== 'PAUSED';
  buttons.recStop.disabled = !live || !recording;
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
  client.on('error', (m) => errors.show(`${m.data.code}: ${m.data.message}`));
  client.on('close', (ev) => {
    if (ev.code !== 1000) errors.show(`WebSocket closed (code ${ev.code}${ev.reason ? `, ${ev.reason}` : ''})`);
    refreshButtons();
  });
  return client;
}

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
    session = await client.startSession(localStream, { webhookUrl: `${origin}/dev/webhooks`, videoCodec: $('#video-codec').value || undefined });
    state.sessionId = session.id;
    state.timings = { media_ms: Math.round(tMedia - t0), websocket_ms: Math.round(tWS - tMedia) };
    $('#session-id').textContent = session.id;
    stopMeter = levelMeter(localStream, $('#mic-level'));
    watchSession(session, t0);
  } catch (err) {
    errors.show(err.message);
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
  s.on('error', (d) => {
    errors.show(`${d.code}: ${d.message}${d.request_type ? ` (in reply to ${d.request_type})` : ''}`);
    // A refused recording_start leaves nothing running.
    if (d.request_type === 'recording_start' && current?.state === 'REQUESTED') {
      current.state = 'REFUSED';
      current = null;
      state.recordingState = '';
      setBadge($('#recording-state'), '');
    }
    refreshButtons();
  });
  s.on('ended', (info) => {
    if (info.cause === 'WEBSOCKET_CLOSED') {
      state.sessionState = 'TERMINATED';
      setBadge($('#session-state'), 'TERMINATED');
      $('#termination-cause').textContent = 'WebSocket closed';
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
  session?.stop();
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
// for audio only); the format is also asked for explicitly, so name and
// content always agree.
function uploadName(sessionId, format) {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  return `${sessionId}-${stamp}.${format}`;
}

buttons.recStart.addEventListener('click', () => {
  errors.clear();
  const format = session.recordingFormat();
  const name = uploadName(session.id, format);
  current = { upload_name: name, format, state: 'REQUESTED', start_click: performance.now(), pauses: [] };
  state.recordings.push(current);
  state.recordingState = 'REQUESTED';
  state.recordingId = '';
  $('#upload-name').textContent = name;
  $('#recording-id').textContent = '…';
  $('#recording-detail').textContent = '';
  setBadge($('#recording-state'), 'REQUESTED');
  session.startRecording({
    uploadUrl: `${origin}/dev/uploads/${name}`,
    webhookUrl: `${origin}/dev/webhooks`,
    format,
    pauseMode: $('#pause-mode').value,
  });
  refreshButtons();
});

buttons.recPause.addEventListener('click', () => {
  current?.pauses.push({ pause_click: performance.now() });
  session.pauseRecording();
});

buttons.recResume.addEventListener('click', () => {
  const p = current?.pauses.at(-1);
  if (p) p.resume_click = performance.now();
  session.resumeRecording();
});

buttons.recStop.addEventListener('click', () => {
  if (current) current.stop_click = performance.now();
  session.stopRecording();
  setBadge($('#recording-state'), 'UPLOADING');
  buttons.recStop.disabled = true;
});

function onRecordingState(d) {
  // STOPPED/FAILED may concern a recording that ended with its session.
  const entry = state.recordings.find((r) => r.recording_id === d.recording_id) ?? (current && !current.recording_id ? current : null);
  if (entry) {
    entry.recording_id = d.recording_id;
    entry.state = d.state;
    Object.assign(entry, { format: d.format, duration_ms: d.duration_ms, size_bytes: d.size_bytes, reason: d.reason });
    if (d.state === 'STOPPED' || d.state === 'FAILED') {
      entry.decided = performance.now();
      // Without a click (the session ended), count from TERMINATED.
      if (entry.stop_click) entry.stop_to_decided_ms = Math.round(entry.decided - entry.stop_click);
    }
  }
  if (entry !== current) {
    if (d.state === 'FAILED') errors.show(`recording ${d.recording_id} FAILED: ${d.reason ?? ''}`);
    refreshRecordings();
    return;
  }
  state.recordingId = d.recording_id;
  state.recordingState = d.state;
  $('#recording-id').textContent = d.recording_id;
  setBadge($('#recording-state'), d.state);
  clearInterval(elapsedTimer);
  switch (d.state) {
    case 'STARTED':
    case 'RESUMED': {
      const t0 = current.start_click;
      elapsedTimer = setInterval(() => {
        $('#rec-elapsed').textContent = `${((performance.now() - t0) / 1000).toFixed(1)} s`;
      }, 200);
      break;
    }
    case 'STOPPED':
      $('#recording-detail').textContent = `${d.format ?? ''} · ${((d.duration_ms ?? 0) / 1000).toFixed(1)} s · ${bytes(d.size_bytes ?? 0)} · uploaded in ${current.stop_to_decided_ms ?? '?'} ms after stop`;
      current = null;
      refreshRecordings();
      break;
    case 'FAILED':
      errors.show(`recording FAILED: ${d.reason ?? 'no reason given'}`);
      current = null;
      break;
  }
  refreshButtons();
}

// Finished recordings, from the dev upload sink ---------------------------------

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
        const tag = u.content_type.startsWith('audio/') ? 'audio' : 'video';
        const mine = state.recordings.some((r) => r.upload_name === u.name);
        return el('li', { class: mine ? 'mine' : null },
          el(tag, { controls: true, preload: 'metadata', src: u.url }),
          el('div', { class: 'meta' },
            el('a', { href: u.url, download: u.name }, u.name),
            el('span', {}, `${u.content_type} · ${bytes(u.size)} · ${new Date(u.mod_time).toLocaleTimeString()}`)));
      }),
    );
  } catch (err) {
    errors.show(`listing recordings: ${err.message}`);
  }
}

$('#refresh-recordings').addEventListener('click', refreshRecordings);
followWebhooks($('#webhooks'), {
  onEvent: (hook) => {
    if (hook.body?.type === 'recording_state' && hook.body.data?.state === 'STOPPED') refreshRecordings();
  },
});
refreshRecordings();
refreshButtons();
