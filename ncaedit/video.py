"""Video in and out (PyAV: FFmpeg's libraries in-process, frame by frame), and applying a rule to a
video frame by frame. The output keeps the frame rate and the audio (copied unchanged where MP4 holds
its codec, else re-encoded as AAC).

Flicker is the enemy of per-frame editing. By default (`temporal="flow"`, with OpenCV) the edit is
carried along the optical flow from frame to frame and only a few refresh steps run on each frame
(temporal.py), so textures move with the scene. With `temporal="none"` every frame's rollout starts
from scratch with the same seed; the update mask and the initial noise depend only on (seed, pixel
position), so a still part of the scene gets the same random numbers in every frame and comes out
the same, but on moving content the textures stay with the pixels and shimmer. With `carry` (and
"none"), a frame's rollout starts from the previous frame's final hidden state instead of fresh
noise: measured with a rule trained on 24-step rollouts (README, "Applying at scale"), the edit
drifted stronger frame after frame (each frame continues the last one's rollout past what the rule
was trained for). `Flicker` measures the result: the mean absolute difference between consecutive frames.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from ncaedit.errors import NcaError
from ncaedit.image import to_samples
from ncaedit.paths import atomic_output, check_regular

VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi"}
DEFAULT_FPS = Fraction(25)
CRF = "18"  # x264 quality: visually near-lossless, so the codec adds little flicker of its own


TEMPORAL = ("flow", "none")


def video_temporal(temporal: str | None, carry: bool, refresh_steps: int | None, steps: int) -> tuple[str, str | None]:
    """The checked `--temporal` mode and a one-line note when the default had to fall back to none."""
    from ncaedit.flow import have_opencv

    if temporal is not None and temporal not in TEMPORAL:
        raise NcaError(f"{temporal}: use flow or none", param="temporal")
    if refresh_steps is not None and not 0 <= refresh_steps <= steps:
        raise NcaError(f"must be between 0 and the steps ({steps})", param="refresh_steps")
    if carry and temporal == "flow":
        raise NcaError("goes with temporal none (temporal flow carries the whole state along the motion)", param="carry")
    if refresh_steps is not None and (temporal == "none" or carry):
        raise NcaError("goes with temporal flow", param="refresh_steps")
    if temporal == "flow" and not have_opencv():
        raise NcaError("flow needs OpenCV: pip install 'ncaedit[video]' (or opencv-python-headless)", param="temporal")
    if temporal is not None:
        return temporal, None
    if carry:
        return "none", None
    if have_opencv():
        return "flow", None
    return "none", "note: videos were edited frame by frame (temporal none): OpenCV is not installed; pip install 'ncaedit[video]' to carry the edit along the motion"


@dataclass
class VideoInfo:
    width: int
    height: int
    fps: Fraction
    frames: int  # 0 when the container does not say


def _av():
    try:
        import av
    except ImportError as exc:
        raise NcaError("video needs PyAV: pip install av") from exc
    return av


def probe_video(path: Path) -> VideoInfo:
    av = _av()
    check_regular(path, "a video")  # PyAV would wait forever on a FIFO and read a device without end
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise NcaError(f"{path}: no video stream")
            stream = container.streams.video[0]
            return VideoInfo(stream.width, stream.height, stream.average_rate or stream.guessed_rate or DEFAULT_FPS, stream.frames)
    except (av.FFmpegError, OSError) as exc:
        raise NcaError(f"{path}: not a readable video ({type(exc).__name__})") from exc


def read_frames(path: Path) -> Iterator[np.ndarray]:
    """The frames as uint8 RGB (H, W, 3), decoded one at a time."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
    except (av.FFmpegError, OSError) as exc:
        raise NcaError(f"{path}: video data is damaged ({type(exc).__name__})") from exc


def _even(frame: np.ndarray) -> np.ndarray:
    """H.264 in yuv420p needs even sides: repeat the last row/column where one is odd."""
    h, w = frame.shape[:2]
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


# Audio codecs an MP4 holds as they are; other audio (PCM from cameras, Vorbis) is re-encoded as AAC.
MP4_AUDIO = {"aac", "mp3", "ac3", "eac3", "opus", "flac", "alac"}


class _CopiedAudio:
    """The audio streams of a source, written into an output beside the edited video: packets copied
    unchanged where MP4 holds the codec (else re-encoded as AAC), interleaved with the video by time.
    Subtitle and data streams are left out (`skipped` names them)."""

    def __init__(self, av, source: Path, output):
        self.input = av.open(str(source))
        self.outputs, self.skipped = {}, []
        for s in self.input.streams:
            if s.type == "audio" and s.codec_context.name in MP4_AUDIO:
                self.outputs[s.index] = output.add_stream_from_template(s)
            elif s.type == "audio":
                out = output.add_stream("aac", rate=s.codec_context.sample_rate)
                out.layout = s.codec_context.layout
                self.outputs[s.index] = out
            elif s.type != "video":
                self.skipped.append(f"{s.type} stream {s.index}")
        video = self.input.streams.video[0] if self.input.streams.video else None
        start = video.start_time if video is not None and video.start_time is not None else 0
        self.start = float(start * video.time_base) if video is not None and video.time_base else 0.0  # the video starts at 0 in the output
        streams = [self.input.streams[i] for i in self.outputs]
        self.packets = self.input.demux(*streams) if streams else iter(())
        self.waiting = None

    def mux_until(self, output, seconds: float) -> None:
        """Write the packets that start before `seconds` (of the output's clock)."""
        while True:
            packet = self.waiting or next(self.packets, None)
            self.waiting = None
            if packet is None:
                return
            if packet.dts is None:  # a demuxer's flush packet
                continue
            shift = round(self.start / packet.time_base)
            if packet.pts is not None and float((packet.pts - shift) * packet.time_base) > seconds:
                self.waiting = packet
                return
            out = self.outputs[packet.stream.index]
            if packet.stream.codec_context.name in MP4_AUDIO:
                packet.pts = None if packet.pts is None else packet.pts - shift
                packet.dts -= shift
                packet.stream = out
                output.mux(packet)
            else:
                for frame in packet.decode():
                    frame.pts = None
                    output.mux(out.encode(frame))

    def close(self, output) -> None:
        self.mux_until(output, math.inf)
        for index, out in self.outputs.items():
            if self.input.streams[index].codec_context.name not in MP4_AUDIO:
                output.mux(out.encode(None))
        self.input.close()


def write_video(path: Path, frames: Iterable[np.ndarray], fps: Fraction, audio_from: Path | None = None) -> int:
    """Encode uint8 RGB frames as an H.264 MP4, atomically (paths.atomic_output), with the audio of
    `audio_from` (a video) copied beside them. Returns the frame count."""
    av = _av()
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise NcaError(f"{path}: no frames to write")
    n = 0
    with atomic_output(path) as tmp, av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": CRF})
        height, width = _even(first).shape[:2]
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        audio = _CopiedAudio(av, audio_from, container) if audio_from is not None else None
        try:
            for frame in itertools.chain([first], frames):
                container.mux(stream.encode(av.VideoFrame.from_ndarray(_even(frame), format="rgb24")))
                n += 1
                if audio is not None:
                    audio.mux_until(container, float(n / fps))
            container.mux(stream.encode())
            if audio is not None:
                audio.close(container)
        except av.FFmpegError as exc:
            raise NcaError(f"{path}: could not write the video ({exc})") from None
    return n


class Flicker:
    """Running mean absolute difference between consecutive frames, in [0, 1]."""

    def __init__(self):
        self.previous, self.total, self.count = None, 0.0, 0

    def add(self, frame: np.ndarray) -> None:
        frame = frame.astype(np.float32) / 255
        if self.previous is not None:
            self.total += float(np.abs(frame - self.previous).mean())
            self.count += 1
        self.previous = frame

    @property
    def value(self) -> float:
        return self.total / max(1, self.count)


@dataclass
class VideoResult:
    frames: int
    flicker_in: float  # mean |frame t - frame t-1| of the input, in [0, 1]
    flicker_out: float  # the same for the output
    cuts: int = 0  # scene cuts where the carried edit started over (temporal="flow")


def video_levels(source: Path, contrast: float):
    """The levels of all of a video's frames together (state.levels_of): one pass of decoding, a
    small cost beside the rule's steps on every frame."""
    from ncaedit.state import levels_of

    return levels_of(read_frames(source), contrast)


def apply_video(
    rule,
    source: Path,
    out: Path,
    steps: int,
    seed: int = 0,
    device: str = "cpu",
    tile: int | None = None,
    strength: float = 1.0,
    mask: Path | None = None,
    feather: float = 0.0,
    carry: bool = False,
    on_frame: Callable[[int, int], None] | None = None,
    workers: int = 1,
    temporal: str = "none",
    refresh_steps: int | None = None,
) -> VideoResult:
    """Edit every frame of `source` and write `out` (MP4) with the source's audio. `temporal="flow"`
    carries the edit along the motion with `refresh_steps` steps a frame (temporal.py; default
    temporal.REFRESH_STEPS); "none" rolls every frame out from scratch. `on_frame(done, total)`
    reports progress (total is 0 when the container does not say)."""
    from ncaedit.apply import blend
    from ncaedit.mask import load_mask
    from ncaedit.tiling import edit_tiles

    info = probe_video(source)
    rule = rule.to(device)
    weights = None if mask is None else load_mask(mask, (info.width, info.height), feather)
    levels = video_levels(source, rule.config.photo_contrast)
    flicker_in, flicker_out = Flicker(), Flicker()
    flow = None
    if temporal == "flow":
        from ncaedit.temporal import REFRESH_STEPS, FlowCarry

        refresh = min(steps, REFRESH_STEPS) if refresh_steps is None else refresh_steps
        flow = FlowCarry(rule, steps, refresh, seed, tile, device, workers, levels)

    def edited_frames():
        hidden = None
        for i, frame in enumerate(read_frames(source)):
            if frame.shape[:2] != (info.height, info.width):
                raise NcaError(f"{source}: frame {i} changes size; not supported")
            edited_frame = np.empty_like(frame)
            final_hidden = np.empty((*frame.shape[:2], rule.config.hidden_channels), np.float32) if carry else None
            tiles = flow.edit(frame) if flow else edit_tiles(rule, frame, steps, seed, tile, device, hidden=hidden, workers=workers, levels=levels)
            for t, edited, tile_hidden in tiles:
                rows, cols = t.core.slices()
                core_mask = None if weights is None else weights[rows, cols]
                edited_frame[rows, cols] = to_samples(blend(frame[rows, cols], edited, strength, core_mask), np.uint8)
                if carry:
                    final_hidden[rows, cols] = tile_hidden
            hidden = final_hidden
            flicker_in.add(frame)
            flicker_out.add(edited_frame)
            if on_frame:
                on_frame(i + 1, info.frames)
            yield edited_frame

    n = write_video(out, edited_frames(), info.fps, audio_from=source)
    return VideoResult(n, flicker_in.value, flicker_out.value, flow.cuts if flow else 0)
