// watchFrames counts the frames a <video> element presents (through
// requestVideoFrameCallback, so only decoded frames count) and notes when
// the first came, its size, and how far playback got.
export function watchFrames(video) {
  const f = { count: 0, first: 0, width: 0, height: 0, mediaTime: 0 };
  const onFrame = (now, meta) => {
    if (f.count++ === 0) f.first = Math.round(performance.now());
    f.width = meta.width;
    f.height = meta.height;
    f.mediaTime = meta.mediaTime;
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  return f;
}
