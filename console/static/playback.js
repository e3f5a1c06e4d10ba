// playback.js: in-page playback of a recording with every video track.
//
// A <video> element shows only the first video track of a file: Chromium
// has no way to pick another. A recording of a camera and a screen has two,
// so each further video track of a WebM file is cut out of it into a
// stream of its own (the file's EBML header and Info, a Tracks element with
// only that track, then the track's blocks, cluster by cluster) and played
// through Media Source Extensions in a muted <video> that follows the first
// one (play, pause, seek, rate). Matroska (H.264) cannot go through MSE in
// browsers: for it the page says how many video tracks the file has and
// offers the file for download (ffplay or VLC show every track).

import { el } from './ui.js';

// The EBML IDs used here (with their marker bits, as written in files).
const ID = {
  EBML: 0x1a45dfa3,
  Segment: 0x18538067,
  Info: 0x1549a966,
  Tracks: 0x1654ae6b,
  TrackEntry: 0xae,
  TrackNumber: 0xd7,
  TrackType: 0x83,
  CodecID: 0x86,
  Name: 0x536e,
  Cluster: 0x1f43b675,
  Timecode: 0xe7,
  SimpleBlock: 0xa3,
  BlockGroup: 0xa0,
  Block: 0xa1,
};

// Elements that end a Cluster of unknown size (the level-1 elements).
const level1 = new Set([ID.Cluster, ID.Info, ID.Tracks, 0x1c53bb6b, 0x1043a770, 0x1254c367, 0x114d9b74, 0x1941a469]);

// Reads an EBML variable-length integer at pos. An ID keeps its marker bit
// (raw); a size loses it, and all ones means "unknown".
function vint(b, pos, raw) {
  const first = b[pos];
  let len = 1;
  let mask = 0x80;
  while (len <= 8 && !(first & mask)) {
    len++;
    mask >>= 1;
  }
  if (len > 8 || pos + len > b.length) throw new Error('not an EBML file');
  let value = raw ? first : first & (mask - 1);
  let ones = value === mask - 1;
  for (let i = 1; i < len; i++) {
    value = value * 256 + b[pos + i];
    if (b[pos + i] !== 0xff) ones = false;
  }
  return { value, len, unknown: !raw && ones };
}

// Lists the elements between start and end: {id, start, data, end}. An
// element of unknown size (a Segment, or the last Cluster of a file a crash
// cut off) ends where its parent does, or a Cluster at the next level-1
// element.
function children(b, start, end) {
  const out = [];
  let pos = start;
  while (pos < end) {
    const id = vint(b, pos, true);
    const size = vint(b, pos + id.len, false);
    const data = pos + id.len + size.len;
    let stop = size.unknown ? end : Math.min(end, data + size.value);
    if (size.unknown && id.value === ID.Cluster) {
      stop = data;
      while (stop < end) {
        const cid = vint(b, stop, true);
        if (level1.has(cid.value)) break;
        const csize = vint(b, stop + cid.len, false);
        stop += cid.len + csize.len + csize.value;
      }
      stop = Math.min(stop, end);
    }
    out.push({ id: id.value, start: pos, data, end: stop });
    pos = stop;
  }
  return out;
}

const uint = (b, e) => b.subarray(e.data, e.end).reduce((v, x) => v * 256 + x, 0);
const text = (b, e) => new TextDecoder().decode(b.subarray(e.data, e.end)).replace(/\0+$/, '');

// Encodes an element: its ID, an 8-byte size, the body.
function element(id, ...parts) {
  const idBytes = [];
  for (let v = id; v > 0; v = Math.floor(v / 256)) idBytes.unshift(v % 256);
  const size = parts.reduce((n, p) => n + p.length, 0);
  const head = new Uint8Array(idBytes.length + 8);
  head.set(idBytes);
  head[idBytes.length] = 0x01;
  for (let i = 7, v = size; i > 0; i--, v = Math.floor(v / 256)) head[idBytes.length + i] = v % 256;
  return concat(head, ...parts);
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/**
 * Reads a WebM/Matroska file's tracks and clusters.
 * @param {ArrayBuffer} buf  the whole file
 * @returns {{tracks: {number: number, type: number, codec: string, name: string}[], stream: (n: number) => Uint8Array}}
 *   stream(n) is a WebM byte stream of track n alone, for MSE
 */
export function parseMatroska(buf) {
  const b = new Uint8Array(buf);
  const [header, segment] = children(b, 0, b.length);
  if (header?.id !== ID.EBML || segment?.id !== ID.Segment) throw new Error('not a WebM or Matroska file');
  let info = new Uint8Array();
  const tracks = [];
  const clusters = [];
  for (const e of children(b, segment.data, segment.end)) {
    if (e.id === ID.Info) info = b.subarray(e.start, e.end);
    if (e.id === ID.Tracks) {
      for (const t of children(b, e.data, e.end)) {
        if (t.id !== ID.TrackEntry) continue;
        const f = Object.fromEntries(children(b, t.data, t.end).map((c) => [c.id, c]));
        tracks.push({
          number: f[ID.TrackNumber] ? uint(b, f[ID.TrackNumber]) : 0,
          type: f[ID.TrackType] ? uint(b, f[ID.TrackType]) : 0,
          codec: f[ID.CodecID] ? text(b, f[ID.CodecID]) : '',
          name: f[ID.Name] ? text(b, f[ID.Name]) : '',
          bytes: b.subarray(t.start, t.end),
        });
      }
    }
    if (e.id === ID.Cluster) {
      const c = { timecode: new Uint8Array(), blocks: [] };
      for (const k of children(b, e.data, e.end)) {
        if (k.id === ID.Timecode) c.timecode = b.subarray(k.start, k.end);
        let block = k.id === ID.SimpleBlock ? k : null;
        if (k.id === ID.BlockGroup) block = children(b, k.data, k.end).find((x) => x.id === ID.Block);
        if (block) c.blocks.push({ track: vint(b, block.data, false).value, bytes: b.subarray(k.start, k.end) });
      }
      clusters.push(c);
    }
  }
  const stream = (n) => {
    const t = tracks.find((x) => x.number === n);
    // A Segment of unknown size, as live WebM streams have.
    const segmentHead = new Uint8Array([0x18, 0x53, 0x80, 0x67, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    const parts = [b.subarray(header.start, header.end), segmentHead, info, element(ID.Tracks, t.bytes)];
    for (const c of clusters) {
      const blocks = c.blocks.filter((x) => x.track === n).map((x) => x.bytes);
      if (blocks.length) parts.push(element(ID.Cluster, c.timecode, ...blocks));
    }
    return concat(...parts);
  };
  return { tracks: tracks.map(({ bytes, ...t }) => t), stream };
}

// The MSE type of a Matroska video codec, or '' when MSE cannot play it.
function mseType(codec, container) {
  const c = { V_VP8: 'vp8', V_VP9: 'vp9' }[codec];
  return container === 'video/webm' && c ? `video/webm; codecs="${c}"` : '';
}

// Plays bytes through Media Source Extensions in video.
async function playThroughMSE(video, bytes, type) {
  const ms = new MediaSource();
  video.src = URL.createObjectURL(ms);
  await new Promise((resolve) => ms.addEventListener('sourceopen', resolve, { once: true }));
  const sb = ms.addSourceBuffer(type);
  await new Promise((resolve, reject) => {
    sb.addEventListener('updateend', resolve, { once: true });
    sb.addEventListener('error', () => reject(new Error('the browser refused the track')), { once: true });
    sb.appendBuffer(bytes);
  });
  ms.endOfStream();
}

// Makes follower play, pause, seek and change rate with leader.
function follow(leader, follower) {
  const sync = () => {
    if (Math.abs(follower.currentTime - leader.currentTime) > 0.2) follower.currentTime = leader.currentTime;
  };
  leader.addEventListener('play', () => {
    sync();
    follower.play().catch(() => {});
  });
  leader.addEventListener('pause', () => follower.pause());
  leader.addEventListener('seeked', sync);
  leader.addEventListener('timeupdate', sync);
  leader.addEventListener('ratechange', () => {
    follower.playbackRate = leader.playbackRate;
  });
}

/**
 * The player of one recording: an <audio> for Ogg; for video, a <video> of
 * the file (its sound and first video track) and, for each further video
 * track, a muted <video> that follows it.
 * @param {{url: string, name: string, content_type: string}} upload  from GET /dev/uploads
 * @returns {HTMLElement}
 */
export function player(upload) {
  if (upload.content_type.startsWith('audio/')) return el('audio', { controls: true, preload: 'metadata', src: upload.url });
  const main = el('video', { controls: true, preload: 'metadata', src: upload.url });
  const box = el('div', { class: 'videos' }, el('figure', {}, main));
  addFurtherTracks(box, main, upload).catch((err) => {
    box.append(el('p', { class: 'hint' }, `further video tracks: ${err.message}`));
  });
  return box;
}

async function addFurtherTracks(box, main, upload) {
  const res = await fetch(upload.url);
  if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
  const file = parseMatroska(await res.arrayBuffer());
  const videos = file.tracks.filter((t) => t.type === 1);
  box.dataset.videoTracks = videos.length;
  if (videos.length < 2) return;
  main.closest('figure').append(el('figcaption', {}, `video 1 of ${videos.length} (${videos[0].name || `track ${videos[0].number}`}) with the sound`));
  for (const [i, t] of videos.slice(1).entries()) {
    const caption = `video ${i + 2} of ${videos.length} (${t.name || `track ${t.number}`})`;
    const type = mseType(t.codec, upload.content_type);
    if (!type || !window.MediaSource?.isTypeSupported(type)) {
      box.append(el('p', { class: 'hint' }, `${caption}: ${t.codec} cannot be played here; `,
        el('a', { href: upload.url, download: upload.name }, 'download the file'), ' and open it in a player that shows every video track (ffplay, VLC).'));
      continue;
    }
    const video = el('video', { playsinline: true, preload: 'auto', 'data-track': t.number });
    video.muted = true;
    box.append(el('figure', {}, video, el('figcaption', {}, caption)));
    await playThroughMSE(video, file.stream(t.number), type);
    follow(main, video);
  }
}
