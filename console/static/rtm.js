// rtm.js: a small browser client for rtmrec's Realtime Messaging protocol.
//
// It is the reference client: copy it. One RTMClient is one WebSocket to
// /rtm; each RTMSession on it is one RTCPeerConnection with its own
// session_id. What the contract asks of a client, and where it is done here:
//
//   - one JSON envelope {type, client_id, session_id, data} per frame ... RTMClient.send
//   - session_start / supervisor_join_session with an SDP offer ........ startSession, join
//   - trickle ICE both ways, {candidate: ""} meaning end of candidates .. RTMSession.#onLocalCandidate, #onRemoteCandidate
//   - renegotiation with an sdp_update offer (screen share mid-call) .... RTMSession.addTrack
//   - answering the server's sdp_update offers (supervisors) ............ RTMSession.#onSdpUpdate
//   - recording_start/stop/pause/resume, session_stop, ping ............. RTMSession methods, RTMClient.ping
//   - naming the upload by the format the server writes ................. recordingFormat, RTMSession.recordingFormat
//   - an error answers one request: {code, message, request_type} ........ RTMSession.#request, RTMError
//
// Every request returns a promise that settles with the server's answer to
// it: resolved by the message that means success (the answer to an offer,
// the recording_state it asked for, TERMINATED), rejected with an RTMError
// by the error message whose request_type names it, on the same session.
// A refused session_start or supervisor_join_session ends the session on
// the spot: its peer connection is closed and it sends nothing more
// (errors for candidates it sent before the refusal arrived are dropped).
//
// Messages of one session are handled strictly in order (a promise chain),
// so a candidate that arrives right after the answer is only added once the
// answer is applied.

/** A random id for client_id / session_id (works outside secure contexts too). */
export function randomId(prefix = '') {
  const b = new Uint8Array(6);
  crypto.getRandomValues(b);
  return prefix + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/**
 * The container rtmrec writes when a recording of this session starts
 * (format "auto"): "mkv" (Matroska) when a video m-line sends H.264, which
 * WebM does not allow; "webm" for other video (VP8, VP9); "ogg" for audio
 * only. A browser sends each m-line with the first codec the answer lists
 * for it; m-lines the server rejected (port 0) or left inactive do not count.
 * Name the upload after it (and send it as recording_start's format, so
 * the server writes exactly what the name says).
 * @param {string} answerSdp  the server's answer (pc.remoteDescription.sdp)
 * @returns {'ogg'|'webm'|'mkv'}
 */
export function recordingFormat(answerSdp) {
  let video = false;
  let h264 = false;
  for (const section of answerSdp.split(/\r?\nm=/).slice(1)) {
    const [mline, ...lines] = section.split(/\r?\n/);
    const [kind, port, , firstPT] = mline.split(' ');
    if (kind !== 'video' || port === '0' || lines.includes('a=inactive')) continue;
    const rtpmap = lines.find((l) => l.startsWith(`a=rtpmap:${firstPT} `));
    video = true;
    if (rtpmap?.split(' ')[1].split('/')[0].toUpperCase() === 'H264') h264 = true;
  }
  return h264 ? 'mkv' : video ? 'webm' : 'ogg';
}

/**
 * The server's error for a request: err.code is the protocol's error code
 * (e.g. session_not_found), err.requestType the request it answers,
 * err.sessionId the session it concerns. Errors made on this side (the
 * session ended before an answer came) have code 'client'.
 */
export class RTMError extends Error {
  constructor({ code, message, request_type: requestType }, sessionId = '') {
    super(`${code}: ${message}`);
    this.name = 'RTMError';
    this.code = code;
    this.requestType = requestType ?? '';
    this.sessionId = sessionId;
  }
}

/** Tiny event emitter: on(type, fn) returns a function that unsubscribes. */
class Emitter {
  #handlers = new Map();

  on(type, fn) {
    if (!this.#handlers.has(type)) this.#handlers.set(type, new Set());
    this.#handlers.get(type).add(fn);
    return () => this.#handlers.get(type)?.delete(fn);
  }

  emit(type, ...args) {
    for (const key of [type, '*']) {
      for (const fn of this.#handlers.get(key) ?? []) {
        try {
          fn(...args);
        } catch (err) {
          console.error(`rtm: ${type} handler failed`, err);
        }
      }
    }
  }
}

/**
 * One WebSocket to /rtm. Events (on):
 *   'message' (msg)       every message received, before routing
 *   'sent' (msg)          every message sent
 *   <type> (msg)          messages not routed to a session (e.g. pong, errors without a known session)
 *   'close' (CloseEvent)  the WebSocket closed; every session on it has ended (TERM_BY_DISCONNECT)
 */
export class RTMClient extends Emitter {
  /**
   * @param {string} url  ws:// or wss:// URL of /rtm; a token goes in ?access_token=
   * @param {object} [opts]
   * @param {string} [opts.clientId]  the client's own label, echoed by the server
   * @param {RTCConfiguration} [opts.rtcConfig]  ICE servers etc. for every peer connection
   */
  constructor(url, { clientId = randomId('console-'), rtcConfig = {} } = {}) {
    super();
    this.url = url;
    this.clientId = clientId;
    this.rtcConfig = rtcConfig;
    /** @type {Map<string, RTMSession>} */
    this.sessions = new Map();
    this.ws = null;
  }

  /** Opens the WebSocket; resolves once it is open. */
  connect() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      ws.onopen = () => resolve(this);
      ws.onerror = () => reject(new Error(`cannot connect to ${this.url.split('?')[0]} (wrong token, server down or busy?)`));
      ws.onclose = (ev) => {
        for (const s of this.sessions.values()) s._closed(ev);
        this.sessions.clear();
        this.emit('close', ev);
      };
      ws.onmessage = (ev) => {
        let msg;
        try {
          msg = JSON.parse(ev.data);
        } catch {
          console.warn('rtm: ignoring a frame that is not JSON', ev.data);
          return;
        }
        this.emit('message', msg);
        const s = this.sessions.get(msg.session_id);
        if (s) s._receive(msg);
        else this.emit(msg.type, msg);
      };
    });
  }

  get connected() {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  /** Sends one message in the protocol's envelope. */
  send(type, sessionId, data = {}) {
    if (!this.connected) throw new Error(`cannot send ${type}: the WebSocket is not open`);
    const msg = { type, client_id: this.clientId, session_id: sessionId, data };
    this.ws.send(JSON.stringify(msg));
    this.emit('sent', msg);
    return msg;
  }

  /** Application-level ping; resolves with the round trip in ms, rejects on the server's error for it. */
  ping() {
    const t0 = performance.now();
    return new Promise((resolve, reject) => {
      const offs = [
        this.on('pong', () => {
          offs.forEach((off) => off());
          resolve(performance.now() - t0);
        }),
        this.on('error', (m) => {
          if (m.data?.request_type !== 'ping') return;
          offs.forEach((off) => off());
          reject(new RTMError(m.data));
        }),
      ];
      this.send('ping', '', {});
    });
  }

  /**
   * Starts a recording client session sending the given tracks. Resolves
   * with the session once the server's answer is applied (its state events
   * follow: CONNECTING, CONNECTED); rejects with an RTMError if the server
   * refuses it, after closing its peer connection.
   * @param {MediaStream} stream  microphone, camera and/or screen
   * @param {object} [opts]
   * @param {string} [opts.sessionId]  chosen by the client (one is made if not given)
   * @param {string} [opts.webhookUrl]  receives every session_state and recording_state
   * @param {string} [opts.videoCodec]  a MIME type (e.g. 'video/H264') the video should
   *   be sent with, if the browser has it; the browser's own choice otherwise
   * @param {(s: RTMSession) => void} [opts.onSession]  called with the session before its
   *   offer goes out, to subscribe to its events from the first one
   */
  async startSession(stream, { sessionId = randomId('s-'), webhookUrl, videoCodec, onSession } = {}) {
    const s = this.#newSession(sessionId);
    s.videoCodec = videoCodec;
    try {
      for (const track of stream.getTracks()) s.addTrack(track, stream);
    } catch (err) {
      s._abandon();
      throw err;
    }
    onSession?.(s);
    await s._offer('session_start', webhookUrl ? { webhook_url: webhookUrl } : {});
    return s;
  }

  /**
   * Joins a session as supervisor, receiving its audio and video. The server
   * sends an sdp_update offer for tracks beyond those asked for here, or added
   * later (a screen share). Resolves and rejects as startSession does (e.g.
   * session_not_found for a session that has ended).
   * @param {string} sessionIdToMonitor
   * @param {object} [opts]
   * @param {string} [opts.sessionId]  the supervisor session's own id
   * @param {number} [opts.audio]  recvonly audio transceivers to offer
   * @param {number} [opts.video]  recvonly video transceivers to offer
   * @param {string} [opts.webhookUrl]  receives the supervisor session's events
   * @param {(s: RTMSession) => void} [opts.onSession]  as for startSession
   */
  async join(sessionIdToMonitor, { sessionId = randomId('sup-'), audio = 1, video = 1, webhookUrl, onSession } = {}) {
    const s = this.#newSession(sessionId);
    for (let i = 0; i < audio; i++) s.pc.addTransceiver('audio', { direction: 'recvonly' });
    for (let i = 0; i < video; i++) s.pc.addTransceiver('video', { direction: 'recvonly' });
    const data = { session_id_to_monitor: sessionIdToMonitor };
    if (webhookUrl) data.webhook_url = webhookUrl;
    onSession?.(s);
    await s._offer('supervisor_join_session', data);
    return s;
  }

  // A session id names one live session per connection.
  #newSession(id) {
    if (this.sessions.get(id)?.ended === false) throw new Error(`session ${id} is already running on this connection`);
    return new RTMSession(this, id, new RTCPeerConnection(this.rtcConfig));
  }

  close() {
    this.ws?.close(1000, 'bye');
  }
}

/**
 * One session: its peer connection and its messages. Events (on):
 *   'session_state' (data)    CONNECTING, CONNECTED, DISCONNECTED, TERMINATED (+ termination_cause)
 *   'recording_state' (data)  STARTED, PAUSED, RESUMED, STOPPED, FAILED (+ recording_id, reason...)
 *   'error' (data)            {code, message, request_type} from the server that answers no
 *                             pending request (e.g. a renegotiation's), or a local failure
 *   'track' (RTCTrackEvent)   remote media (supervisors)
 *   'ended' (info)            the session is over: {cause}, {cause: 'REFUSED', error}
 *                             or {cause: 'WEBSOCKET_CLOSED'}
 */
export class RTMSession extends Emitter {
  #client;
  #queue = Promise.resolve(); // serialises incoming messages
  #signalled = false; // our offer went out: candidates may follow it
  #pendingCandidates = [];
  #sentEndOfCandidates = false;
  #negotiated = false; // the first answer was applied: renegotiation may start
  #refused = false; // the server refused the session: its leftovers are dropped
  /** @type {Map<string, {resolve: Function, reject: Function, recordingId?: string}[]>} request_type → waiting callers, oldest first */
  #pending = new Map();

  constructor(client, id, pc) {
    super();
    this.#client = client;
    this.id = id;
    this.pc = pc;
    this.state = 'NEW';
    this.recording = null; // last recording_state data
    this.ended = false;
    /** @type {Map<MediaStreamTrack, RTCRtpSender>} */
    this.senders = new Map();
    this.videoCodec = undefined; // MIME type the video is preferably sent with
    client.sessions.set(id, this);

    pc.onicecandidate = (ev) => this.#onLocalCandidate(ev.candidate);
    pc.ontrack = (ev) => this.emit('track', ev);
    pc.onnegotiationneeded = () => this.#renegotiate();
  }

  send(type, data = {}) {
    return this.#client.send(type, this.id, data);
  }

  // Sends a request and returns a promise that #settle resolves with the
  // message that answers it, or #reject rejects with its error. A
  // recording_stop waits for the outcome of the recording it stopped.
  #request(type, data = {}) {
    if (this.ended) return Promise.reject(new RTMError({ code: 'client', message: 'the session has ended', request_type: type }, this.id));
    return new Promise((resolve, reject) => {
      if (!this.#pending.has(type)) this.#pending.set(type, []);
      const waiting = this.#pending.get(type);
      const entry = { resolve, reject, recordingId: type === 'recording_stop' ? this.recording?.recording_id : undefined };
      waiting.push(entry);
      try {
        this.send(type, data);
      } catch (err) {
        waiting.splice(waiting.indexOf(entry), 1);
        reject(err);
      }
    });
  }

  // Resolves the oldest caller waiting for type (for a recording's
  // outcome, the one that stopped that recording).
  #settle(type, value) {
    const waiting = this.#pending.get(type) ?? [];
    let i = 0;
    if (type === 'recording_stop') i = waiting.findIndex((w) => !w.recordingId || w.recordingId === value.recording_id);
    if (i < 0 || !waiting.length) return false;
    waiting.splice(i, 1)[0].resolve(value);
    return true;
  }

  // Rejects the caller an error answers: errors come at once, so it is the
  // oldest waiting, except for recording_stop, whose older callers wait for
  // outcomes of recordings the server already took.
  #reject(type, err) {
    const waiting = this.#pending.get(type) ?? [];
    const w = type === 'recording_stop' ? waiting.pop() : waiting.shift();
    w?.reject(err);
    return !!w;
  }

  // Sends the first offer in session_start / supervisor_join_session and
  // waits for the answer; a refusal ends the session.
  async _offer(type, data) {
    try {
      await this.pc.setLocalDescription(await this.pc.createOffer());
      const answered = this.#request(type, { ...data, sdp: this.pc.localDescription.toJSON() });
      answered.catch(() => {}); // awaited below, unless sending a candidate fails first
      this.#signalled = true;
      for (const c of this.#pendingCandidates.splice(0)) this.send('candidate', { candidate: c });
      await answered;
    } catch (err) {
      this.#refused = true;
      this.#end({ cause: 'REFUSED', reason: err.message, error: err });
      throw err;
    }
  }

  // Forgets a session that never sent its offer.
  _abandon() {
    this.#client.sessions.delete(this.id);
    this.ended = true;
    this.pc.close();
  }

  // Trickles our candidates; candidates gathered before the offer was sent
  // wait for it (the server must know the session first). A null candidate
  // means gathering is complete: it goes out as the empty candidate.
  #onLocalCandidate(candidate) {
    let c;
    if (!candidate || candidate.candidate === '') {
      if (this.#sentEndOfCandidates) return;
      this.#sentEndOfCandidates = true;
      c = { candidate: '' };
    } else {
      c = candidate.toJSON();
    }
    if (this.ended) return;
    if (!this.#signalled) this.#pendingCandidates.push(c);
    else if (this.#client.connected) this.send('candidate', { candidate: c });
  }

  // Our side changed (a track added or removed): offer again with sdp_update.
  async #renegotiate() {
    if (!this.#negotiated || this.ended || this.pc.signalingState !== 'stable') return;
    try {
      await this.pc.setLocalDescription(await this.pc.createOffer());
      this.send('sdp_update', { sdp: this.pc.localDescription.toJSON() });
    } catch (err) {
      this.emit('error', { code: 'client', message: `renegotiation failed: ${err.message}` });
    }
  }

  _receive(msg) {
    this.#queue = this.#queue
      .then(() => this.#handle(msg))
      .catch((err) => this.emit('error', { code: 'client', message: `${msg.type}: ${err.message}`, request_type: msg.type }));
  }

  async #handle(msg) {
    const data = msg.data ?? {};
    if (this.ended && (msg.type === 'sdp_update' || msg.type === 'candidate')) return;
    switch (msg.type) {
      case 'sdp_update':
        return this.#onSdpUpdate(data.sdp);
      case 'candidate':
        return this.#onRemoteCandidate(data.candidate);
      case 'session_state':
        this.state = data.state;
        this.emit('session_state', data);
        if (data.state === 'TERMINATED') {
          this.#settle('session_stop', data);
          this.#end({ cause: data.termination_cause, reason: data.reason });
        }
        return;
      case 'recording_state':
        this.recording = data;
        this.#settle(recordingRequest[data.state], data);
        this.emit('recording_state', data);
        return;
      case 'error':
        if (this.#reject(data.request_type, new RTMError(data, this.id))) return;
        // Candidates sent before a refusal arrived are refused in turn: the
        // refusal already said everything.
        if (this.#refused && data.request_type === 'candidate') return;
        this.emit('error', data);
        return;
      default:
        this.emit(msg.type, data);
    }
  }

  async #onSdpUpdate(sdp) {
    if (!sdp) return;
    if (sdp.type === 'answer') {
      if (this.pc.signalingState !== 'have-local-offer') return; // stale: nothing of ours to answer
      await this.pc.setRemoteDescription(sdp);
      // Changes made while our offer was out fire negotiationneeded again
      // now that the state is stable.
      const first = !this.#negotiated;
      this.#negotiated = true;
      if (first) this.#settle('session_start', this) || this.#settle('supervisor_join_session', this);
      return;
    }
    // The server offers (a supervisor gets the monitored session's new
    // track). Were we offering at the same moment, setRemoteDescription
    // rolls our offer back: the server's wins, ours follows once stable.
    await this.pc.setRemoteDescription(sdp);
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    this.send('sdp_update', { sdp: this.pc.localDescription.toJSON() });
    this.#negotiated = true;
  }

  async #onRemoteCandidate(c) {
    if (!c) return;
    if (c.candidate === '') {
      // End of candidates. The server sends no sdpMid; the browser accepts
      // that for the end-of-candidates indication.
      await this.pc.addIceCandidate({ candidate: '' }).catch(() => {});
      return;
    }
    await this.pc.addIceCandidate(c);
  }

  /** Adds a track (mid-call, e.g. a screen share, it renegotiates with sdp_update). */
  addTrack(track, stream) {
    const sender = this.pc.addTrack(track, stream);
    this.senders.set(track, sender);
    if (track.kind === 'video' && this.videoCodec) this.#preferVideoCodec(sender);
    return sender; // negotiationneeded fires and #renegotiate sends the offer
  }

  // Puts the codec asked for first in the offer: the server answers in the
  // offer's order, and the browser sends the answer's first codec.
  #preferVideoCodec(sender) {
    const codecs = RTCRtpReceiver.getCapabilities('video')?.codecs ?? [];
    const want = this.videoCodec.toLowerCase();
    const preferred = codecs.filter((c) => c.mimeType.toLowerCase() === want);
    if (!preferred.length) throw new Error(`this browser cannot send ${this.videoCodec}`);
    const transceiver = this.pc.getTransceivers().find((t) => t.sender === sender);
    transceiver.setCodecPreferences([...preferred, ...codecs.filter((c) => c.mimeType.toLowerCase() !== want)]);
  }

  /**
   * The format a recording started now would be written in (see
   * recordingFormat); known once the server's answer is applied.
   * @returns {'ogg'|'webm'|'mkv'}
   */
  recordingFormat() {
    if (!this.pc.remoteDescription) throw new Error('no answer yet: the recording format is not known');
    return recordingFormat(this.pc.remoteDescription.sdp);
  }

  /** Removes a track mid-call; renegotiates (its m-line becomes inactive). */
  removeTrack(track) {
    const sender = this.senders.get(track);
    if (!sender || this.ended) return;
    this.senders.delete(track);
    this.pc.removeTrack(sender);
  }

  /**
   * Starts a recording; resolves with the STARTED recording_state data
   * (recording_id, format), rejects with the server's error.
   * @param {object} opts
   * @param {string} opts.uploadUrl  the finished file is PUT there; only a 200 counts
   * @param {string} [opts.webhookUrl]  this recording's events go there instead of the session's
   * @param {'auto'|'ogg'|'webm'|'mkv'} [opts.format]  the container; name the upload
   *   after it (recordingFormat() says which one "auto" would give)
   * @param {'silence'|'skip'} [opts.pauseMode]  what a pause leaves in the file
   */
  startRecording({ uploadUrl, webhookUrl, format, pauseMode }) {
    const data = { upload_url: uploadUrl };
    if (webhookUrl) data.webhook_url = webhookUrl;
    if (format) data.format = format;
    if (pauseMode) data.pause_mode = pauseMode;
    return this.#request('recording_start', data);
  }

  /**
   * Stops the recording. Resolves with its outcome, the STOPPED (uploaded)
   * or FAILED (with a reason) recording_state data, which comes once the
   * upload is decided: retries may take minutes. Rejects with the server's
   * error (no_active_recording).
   */
  stopRecording() {
    return this.#request('recording_stop');
  }

  /** Pauses the recording; resolves with PAUSED, rejects with the server's error. */
  pauseRecording() {
    return this.#request('recording_pause');
  }

  /** Resumes the recording; resolves with RESUMED, rejects with the server's error. */
  resumeRecording() {
    return this.#request('recording_resume');
  }

  /**
   * Ends the session (TERM_BY_CLIENT); a running recording is finished and
   * uploaded. Resolves with the TERMINATED session_state data.
   */
  stop() {
    return this.#request('session_stop');
  }

  // The WebSocket closed under the session.
  _closed(ev) {
    this.#end({ cause: 'WEBSOCKET_CLOSED', reason: ev.reason || `code ${ev.code}` });
    // Nothing more can answer: what still waits (a recording's outcome
    // included) is rejected.
    this.#rejectAll('the WebSocket closed');
  }

  #rejectAll(why) {
    for (const [type, waiting] of this.#pending) {
      for (const w of waiting.splice(0)) w.reject(new RTMError({ code: 'client', message: why, request_type: type }, this.id));
    }
  }

  #end(info) {
    if (this.ended) return;
    this.ended = true;
    this.pc.close();
    // A recording's outcome still comes after TERMINATED, once its upload
    // is decided: only that request waits on.
    const outcome = this.#pending.get('recording_stop');
    this.#pending.delete('recording_stop');
    this.#rejectAll(`the session ended (${info.cause})`);
    if (outcome) this.#pending.set('recording_stop', outcome);
    // The session stays routable for that outcome.
    this.emit('ended', info);
  }
}

// The request a recording_state answers.
const recordingRequest = {
  STARTED: 'recording_start',
  PAUSED: 'recording_pause',
  RESUMED: 'recording_resume',
  STOPPED: 'recording_stop',
  FAILED: 'recording_stop',
};
