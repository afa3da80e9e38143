"""Passive, clock-driven media ports (pjmedia ``port.h`` style).

Nothing here owns a timer: the engine's 20 ms clock pulls a frame from each
:class:`WavPlayer` and ticks each :class:`StereoRecorder` once per tick.

Recording writes happen on a :class:`DiskWriter` thread (one per engine, shared
by every recorder) through a bounded per-recorder backlog, so a slow disk can
never delay the relay.  When a recorder's backlog is full, frames are dropped
*to disk* and counted loudly (log + ``on_dropped`` metric hook); the gap is
written as silence once the disk catches up, so the file's timeline stays
true to wall-clock time.  The RIFF sizes are patched every second of audio and
the data is handed to the OS every half second: a crash leaves a valid file
up to the last patch, and :func:`~gateway.media.wav.repair_wav` recovers the rest.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import hashlib
import logging
import os
import struct
import threading
from collections import deque
from collections.abc import Callable
from itertools import repeat
from pathlib import Path

from . import fast, g711
from .aligner import LEFT, RIGHT, StereoAligner, _Side, interleave, mix
from .errors import MediaError
from .wav import HEADER_SIZE, RATE, Audio, load_wav, wav_header

log = logging.getLogger(__name__)

FRAME_SAMPLES = 160
_PCMU_DECODE = g711.decode_tables("PCMU")
_PCMU_SILENCE = bytes((g711.SILENCE_BYTE["PCMU"],))
_ZERO = bytes(256)  # a translate table that decodes every code to 0


def _load_g711_frame() -> Callable[..., bytes | None] | None:
    """The C frame builder (both sides' ``_pull`` and the G.711 decode in one call), or None."""
    module = fast.load()
    if module is None:
        return None
    try:
        module.bind_aligner(_Side)
    except (TypeError, AttributeError) as exc:
        log.warning("recorder: C frame builder unusable (%s); framing in Python", exc)
        return None
    return module.g711_frame


_G711_FRAME = _load_g711_frame()
_FAST = fast.load()
#: Every due recording's frames, size patch and fsync in one call that releases the GIL once (C), or None.
_WRITE_BATCH: Callable[[list[tuple[int, list[bytes], bytes | None, bool]]], list[tuple[int, int]]] | None = \
    _FAST.write_batch if _FAST is not None else None
#: A file created with its contents (a recording's, kept open; a staged ``.sha256``, closed), and a recording read
#: back for the hash at the seal: each in one call that releases the GIL once (C), or None (Python, a system
#: call and a GIL hand-over per step).
_CREATE_FILE: Callable[[bytes, bytes, int, bool], int | None] | None = getattr(_FAST, "create_file", None)
_SEAL_READ: Callable[[int, bytes, int], bytes | None] | None = getattr(_FAST, "seal_read", None)
#: Recordings up to this size are read back whole in one call for the hash; longer ones in 1 MiB reads.
_SEAL_READ_MAX = 8 << 20


class _Descriptor:
    """An open file known by its descriptor alone: all a recorder needs of a file object (``fileno``, ``close``)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


def _decode(payload: bytes, lo: bytes, hi: bytes) -> bytes:
    out = bytearray(2 * len(payload))
    out[0::2] = payload.translate(lo)
    out[1::2] = payload.translate(hi)
    return bytes(out)
__all__ = ["LEFT", "RIGHT", "WavPlayer", "DiskWriter", "StereoRecorder"]


class WavPlayer:
    """A source of 20 ms frames from a clip, played ``repeat`` times; ends with None."""

    def __init__(self, audio: Audio | str | os.PathLike[str], *, repeat: int = 1) -> None:
        self.audio = audio if isinstance(audio, Audio) else load_wav(audio)
        self.repeat = max(1, repeat)
        frames = -(-self.audio.samples // FRAME_SAMPLES)
        #: Frames in one pass of the clip (the last one padded with silence).
        self.frames_per_pass = frames
        self._index = 0

    @property
    def total_frames(self) -> int:
        """Frames over all repeats."""
        return self.frames_per_pass * self.repeat

    @property
    def done(self) -> bool:
        """True once every frame has been read."""
        return self._index >= self.total_frames

    def read(self, codec: str) -> tuple[bytes, bytes] | None:
        """The next frame as ``(G.711 payload in codec, linear PCM)``, or None at the end."""
        if self.done:
            return None
        i = self._index % self.frames_per_pass if self.frames_per_pass else 0
        self._index += 1
        start = i * FRAME_SAMPLES
        payload = self.audio.encoded(codec)[start:start + FRAME_SAMPLES]
        pcm = self.audio.pcm[2 * start:2 * (start + FRAME_SAMPLES)]
        if len(payload) < FRAME_SAMPLES:
            payload += g711.silence(codec, FRAME_SAMPLES - len(payload))
            pcm += bytes(2 * FRAME_SAMPLES - len(pcm))
        return payload, pcm


def _size_patch(data_bytes: int) -> bytes:
    """The WAV header's RIFF and data sizes (offsets 4 and 40) for ``data_bytes`` of audio, as write_batch and
    seal_read take them."""
    return struct.pack("<II", 36 + data_bytes, data_bytes)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_staged(path: Path, data: bytes, *, sync: bool) -> Path:
    """Write ``data`` whole to ``path`` + ``.tmp`` (fsync'd when ``sync``); returns that name, for the caller
    to rename over ``path`` once it is durable."""
    tmp = path.with_name(path.name + ".tmp")
    if not sync and _CREATE_FILE is not None:  # open, write and close in one GIL release (a batched seal's)
        _CREATE_FILE(os.fsencode(tmp), data, 0o644, False)
        return tmp
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def write_durably(path: Path, data: bytes) -> None:
    """Write a small file so that a crash leaves either no file or all of it: a temporary file, fsync'd,
    renamed over ``path``, and the folder fsync'd (the rename and the recording's own entry on disk)."""
    os.replace(write_staged(path, data, sync=True), path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs  # type: ignore[no-any-return]
    except (AttributeError, OSError):  # not Linux (glibc): recordings are fsync'd one by one
        return None


_SYNCFS = _load_syncfs()


def _load_prctl() -> Callable[..., int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except (AttributeError, OSError):  # not Linux (glibc)
        return None


_PRCTL = _load_prctl()


def name_native_thread(name: str) -> None:
    """Give the calling thread ``name`` (15 bytes at most) in the kernel too, so that ``top -H``, ``ps -L``,
    ``perf`` and /proc/PID/task/*/comm tell the gateway's threads apart (Python names them only for itself).
    Does nothing where ``prctl(PR_SET_NAME)`` is not available."""
    if _PRCTL is not None:
        _PRCTL(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


def _sync_filesystem(folder: Path) -> None:
    """``syncfs(2)`` on the file system holding ``folder``: every file written there is on disk when it
    returns (one journal commit for a batch of recordings instead of three fsyncs each)."""
    assert _SYNCFS is not None
    fd = os.open(folder, os.O_RDONLY)
    try:
        if _SYNCFS(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs {folder}: {os.strerror(err)}")
    finally:
        os.close(fd)


class DiskWriter:
    """One writer thread serving many recorders (``start=False`` runs it by hand in tests).

    Frames do not travel as jobs: each recorder keeps its own thread-safe deque of finished frames,
    and every ``poll_interval`` the thread writes, in one ``write``, the frames of each open recorder
    that has at least ``batch_frames`` queued (0.5 s of audio: one system call per recorder every half
    second instead of one per poll), at most ``per_poll`` recorders per poll, longest-waiting first:
    the thread holds the interpreter lock in short slices, so the event loop's thread never waits
    long for it.  Only ``open`` and ``seal`` are jobs (a seal first writes everything queued before it).
    """

    #: Seals are done in batches: each finished recording's header is patched, its SHA-256 computed and its
    #: ``.sha256`` written to a temporary name, then one ``syncfs`` makes all of them durable, the renames
    #: follow and a second ``syncfs`` makes those durable.  Three fsyncs per recording one after the other
    #: took ~5 ms a seal here and capped a busy gateway at 100-200 sealed recordings a second (the rest
    #: waiting in memory); a batch costs two file-system syncs in all (0.4-0.7 ms a seal, measured on this
    #: machine).  Sealing threads were tried instead: their Python work took the interpreter lock from the
    #: event loop's thread and cut the calls per second by a third.  Without ``syncfs`` (not Linux) each
    #: recording is sealed with its own fsyncs, as before.

    def __init__(self, *, poll_interval: float = 0.02, batch_frames: int = 25, per_poll: int = 32,
                 start: bool = True) -> None:
        self.poll_interval = poll_interval
        self.batch_frames = batch_frames
        self.per_poll = per_poll
        self._jobs: deque[tuple[StereoRecorder, str, object]] = deque()
        self._open: dict[StereoRecorder, None] = {}
        #: Folders known to exist (one mkdir per folder, not per recording).
        self._folders: set[Path] = set()
        #: Recordings (and writer steps) that failed with an unexpected exception: logged, never fatal.
        self.errors = 0
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._run, name="media-disk-writer", daemon=True)
            self._thread.start()

    def submit(self, recorder: StereoRecorder, kind: str, data: object = None) -> None:
        """Queue a job (``open``, ``seal``) for ``recorder``; never blocks.

        The thread is woken only for a seal that stops it: it polls every ``poll_interval`` anyway, and a
        wake-up per job (two a call) cost the event loop's thread a futex wake and an interpreter-lock
        hand-over each (a few per cent of its time at 300 calls/s)."""
        self._jobs.append((recorder, kind, data))
        if data is True:
            self._wake.set()

    def run_pending(self, *, batch_frames: int = 1, limit: int | None = None) -> int:
        """Process the jobs queued when it starts and write the queued frames of every recorder with at least
        ``batch_frames`` of them (at most ``limit`` recorders, longest-waiting first), on the calling
        thread; returns how many jobs and frame batches were handled."""
        count = 0
        batch_seals: list[StereoRecorder] = []
        # The jobs queued now, not those that arrive meanwhile: on a busy gateway opens and seals never stop
        # coming, and the seals batched below and the audio written after them must not wait for a lull.
        for _ in range(len(self._jobs)):
            recorder, kind, data = self._jobs.popleft()
            count += 1
            try:
                if kind == "open":
                    recorder._open()
                    self._open[recorder] = None
                elif kind == "seal":
                    self._open.pop(recorder, None)
                    if recorder._done.done():  # it failed earlier (_failed): nothing more goes to its file
                        recorder._queue.clear()
                        self._stopping = self._stopping or bool(data)
                        continue
                    recorder._write_queued()
                    if self._thread is not None and not data and _SYNCFS is not None:
                        batch_seals.append(recorder)  # sealed below with the others (see the class notes)
                    else:  # by hand (tests), a recorder's own writer that stops with its seal, or no syncfs
                        recorder._seal(data)  # type: ignore[arg-type]
            except Exception:
                self._failed(recorder, kind)
                if kind == "seal" and data:  # the recorder's own writer stops with it, as after a seal
                    self._stopping = True
        if batch_seals:
            self._seal_batch(batch_seals)
        batch = max(1, batch_frames)
        # Longest-waiting first (the dict's order), stopping at ``limit``: with every call's recorder fed one
        # frame a tick, the first ones are the ones due, so a busy poll reads a few queues, not all of them.
        due: list[StereoRecorder] = []
        if limit is None or limit > 0:
            for recorder in self._open:
                if len(recorder._queue) >= batch:
                    due.append(recorder)
                    if len(due) == limit:
                        break
        if due:
            self._write_due(due)
            count += len(due)
            for recorder in due:  # to the back of the line
                if self._open.pop(recorder, 0) is None:
                    self._open[recorder] = None
        return count

    def _write_due(self, due: list[StereoRecorder]) -> None:
        # A recorder that raises (a bug, not a disk error: those are handled and counted by the recorder)
        # loses its recording, never the other calls' (see _failed).
        write_batch = _WRITE_BATCH
        if write_batch is None:
            for recorder in due:
                try:
                    recorder._write_queued()
                except Exception:
                    self._failed(recorder, "write")
            return
        # One call for every recording: the GIL is released once for all the system calls instead of
        # once per write (each re-acquisition can make the event loop's thread wait).
        items: list[tuple[int, list[bytes], bytes | None, bool]] = []
        plans: list[tuple[StereoRecorder, list[bytes], tuple[int, bytes | None, bool]]] = []
        for recorder in due:
            try:
                frames = recorder._take_queued()
                if not frames:
                    continue
                if recorder._file is None:
                    recorder.frames_written += len(frames)
                    continue
                plan = recorder._plan_write(frames)
                items.append((recorder._file.fileno(), frames, plan[1], plan[2]))
                plans.append((recorder, frames, plan))
            except Exception:
                self._failed(recorder, "write")
        if not items:
            return
        try:
            results: list[tuple[int, int]] | None = write_batch(items)
        except Exception:
            log.exception("disk writer: a batched write of %d recordings failed; writing them one by one",
                          len(items))
            results = None
        for index, (recorder, frames, plan) in enumerate(plans):
            try:
                if results is None:
                    recorder._write(frames)
                else:
                    recorder._wrote(frames, plan, *results[index])
            except Exception:
                self._failed(recorder, "write")

    def _seal_batch(self, recorders: list[StereoRecorder]) -> None:
        """Seal ``recorders`` with two file-system syncs in all (see the class notes).  A recording that fails
        fails alone; if a sync fails, every recording of the batch fails its seal (start-up recovery hashes
        and links them, as after a crash)."""
        staged: list[tuple[StereoRecorder, Path]] = []
        for recorder in recorders:
            try:
                tmp = recorder._seal_stage()
                if tmp is not None:
                    staged.append((recorder, tmp))
            except OSError as exc:
                recorder._seal_failed(exc)
            except Exception:
                self._failed(recorder, "seal")
        if not staged:
            return
        folders = {tmp.parent for _, tmp in staged}
        try:
            for folder in folders:
                _sync_filesystem(folder)  # the recordings and their .sha256 under temporary names
            for _recorder, tmp in staged:
                os.replace(tmp, tmp.with_name(tmp.name[: -len(".tmp")]))
            for folder in folders:
                _sync_filesystem(folder)  # the renames
        except OSError as exc:
            for recorder, _ in staged:
                recorder._seal_failed(exc)
            return
        for recorder, _ in staged:
            recorder._seal_done()

    def _failed(self, recorder: StereoRecorder, what: str) -> None:
        """``what`` (open, write, seal) raised for ``recorder``: that recording stops and fails (its seal
        gives the error, counted in gateway_recordings_failed_total), the writer and every other recording
        go on.  The file stays as far as it was written; start-up recovery repairs and links it."""
        self.errors += 1
        log.exception("recording %s: %s failed; this recording stops, the others go on", recorder.path, what)
        self._open.pop(recorder, None)
        recorder._drop_file()
        if not recorder._done.done():
            recorder._done.set_exception(MediaError(f"{recorder.path}: recording failed in {what}"))

    #: Niceness added to the writer thread: the event loop's thread (relaying packets) comes first on a
    #: busy core; the writer still gets every idle moment, and a full backlog is counted, never hidden.
    NICE = 10

    def _run(self) -> None:
        name_native_thread("gw-disk-writer")
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                           os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) + self.NICE)
        except (AttributeError, OSError) as exc:  # not Linux, or not allowed: same work, same priority
            log.debug("disk writer: cannot lower its priority: %s", exc)
        while not self._stopping or self._jobs:
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            try:
                self.run_pending(batch_frames=self.batch_frames, limit=self.per_poll)
            except Exception:  # run_pending isolates each recording; this is the last guard of the thread
                self.errors += 1
                log.exception("disk writer: unexpected error; going on")
        self._close_open()

    def _close_open(self) -> None:
        for recorder in list(self._open):
            try:
                recorder._close_unsealed()
            except Exception:
                self._failed(recorder, "close")
        self._open.clear()

    def close(self) -> None:
        """Finish queued jobs, write out and close recordings still open (unsealed), stop the thread."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        else:
            self.run_pending()
            self._close_open()


class StereoRecorder:
    """A stereo 16-bit 8 kHz WAV (left = help point, right = operator), one frame per tick."""

    #: Audio between RIFF size patches, in frames (1 s).
    PATCH_EVERY = 50
    #: Audio between fsyncs, in frames (5 s).
    FSYNC_EVERY = 250
    #: The most sample data a RIFF header can describe (its size fields are 32-bit), in whole frames:
    #: about 37 hours.  Audio past it is counted as failed and left out.
    MAX_DATA_BYTES = (0xFFFFFFFF - (HEADER_SIZE - 8)) // (4 * FRAME_SAMPLES) * (4 * FRAME_SAMPLES)

    def __init__(self, path: str | os.PathLike[str], *, writer: DiskWriter | None = None,
                 max_pending_frames: int = 500,
                 on_dropped: Callable[[StereoRecorder, int], None] | None = None) -> None:
        self.path = Path(path)
        self._own_writer = writer is None
        self.writer = writer if writer is not None else DiskWriter()
        #: Received audio is aligned as G.711, one byte a sample, and decoded a frame at a time.
        self.aligner = StereoAligner(FRAME_SAMPLES, sample_bytes=1)
        self._codecs: list[str | None] = [None, None]
        self._decode: list[tuple[bytes, bytes]] = [_PCMU_DECODE, _PCMU_DECODE]
        self.aligner.set_silence(LEFT, _PCMU_SILENCE)
        self.aligner.set_silence(RIGHT, _PCMU_SILENCE)
        self._stereo_bytes = 4 * FRAME_SAMPLES
        self.max_pending_frames = max_pending_frames
        self.on_dropped = on_dropped
        #: Frames handed to the writer, frames written, and frames dropped to disk.
        self.frames_queued = 0
        self.frames_written = 0
        self.frames_dropped = 0
        #: Frames whose write failed (writer thread; added to ``frames_dropped`` when sealed).
        self.frames_failed = 0
        self._write_errors = 0
        self._full = False
        self._gap = 0
        self.sealed = False
        self.sha256: str | None = None
        #: Bytes of the sealed file (what the SHA-256 covers), known once sealed.
        self.size: int | None = None
        self._file = None  # only touched on the writer thread
        self._data_bytes = 0
        self._since_patch = 0
        self._since_fsync = 0
        self._done: concurrent.futures.Future[str] = concurrent.futures.Future()
        #: Finished frames waiting for the writer thread (deque: appended here, popped there).
        self._queue: deque[bytes] = deque()
        self.writer.submit(self, "open")

    # -- loop-thread side ------------------------------------------------------------------------
    def push(self, side: int, payload: bytes, codec: str) -> None:
        """Queue G.711 audio received from ``side`` (kept as G.711 until its frame is written)."""
        if codec != self._codecs[side]:
            self._set_codec(side, codec)
        s = self.aligner.sides[side]
        s.fifo += payload
        s.pushed = True

    def _set_codec(self, side: int, codec: str) -> None:
        lo, hi = g711.decode_tables(codec)  # raises MediaError for anything but PCMU/PCMA
        previous = self._codecs[side]
        fifo = self.aligner.sides[side].fifo
        if previous is not None and fifo:
            fifo[:] = fifo.translate(g711.transcode_table(previous, codec))  # a re-INVITE changed codec
        self._codecs[side] = codec
        self._decode[side] = (lo, hi)
        self.aligner.set_silence(side, bytes((g711.SILENCE_BYTE[codec],)))

    def push_prompt(self, side: int, pcm: bytes) -> None:
        """Mix prompt audio heard on ``side`` into that channel."""
        self.aligner.push_prompt(side, pcm)

    def tick(self, count: int = 1) -> None:
        """Produce ``count`` stereo frames (called by the media clock)."""
        if self.sealed:
            return
        for _ in range(count):
            self._enqueue(self._frame())

    def _frame(self) -> bytes:
        build = _G711_FRAME
        if build is not None:
            al = self.aligner
            ls, rs = al.sides
            if not ls.prompt and not rs.prompt:
                (llo, lhi), (rlo, rhi) = self._decode
                frame = build(ls, rs, al.frame_bytes, al.prefill_bytes, al.max_bytes, llo, lhi, rlo, rhi)
                if frame is not None:
                    al.frames += 1
                    return frame
        left, right, lp, rp = self.aligner.tick_parts()
        (llo, lhi), (rlo, rhi) = self._decode
        # A side that sent nothing is written as digital zero (A-law has no code for zero).
        lsides = self.aligner.sides
        if left is lsides[LEFT].silence:
            llo = lhi = _ZERO
        if right is lsides[RIGHT].silence:
            rlo = rhi = _ZERO
        if lp is None and rp is None:
            # Decode both G.711 channels straight into the interleaved 16-bit stereo frame.
            out = bytearray(self._stereo_bytes)
            out[0::4] = left.translate(llo)
            out[1::4] = left.translate(lhi)
            out[2::4] = right.translate(rlo)
            out[3::4] = right.translate(rhi)
            return bytes(out)
        lpcm = _decode(left, llo, lhi)
        rpcm = _decode(right, rlo, rhi)
        if lp is not None:
            lpcm = mix(lpcm, lp)
        if rp is not None:
            rpcm = mix(rpcm, rp)
        return interleave(lpcm, rpcm)

    def _enqueue(self, frame: bytes) -> None:
        if self.frames_queued - self.frames_written >= self.max_pending_frames:
            self.frames_dropped += 1
            self._gap += 1
            if self.frames_dropped == 1 or self.frames_dropped % 500 == 0:
                log.warning("recording %s: disk behind, %d frames dropped to disk (gap kept as silence)",
                            self.path, self.frames_dropped)
            if self.on_dropped is not None:
                self.on_dropped(self, self.frames_dropped)
            return
        if self._gap:
            frame = bytes(len(frame) * self._gap) + frame
            self._gap = 0
        self.frames_queued += 1
        self._queue.append(frame)

    def seal_start(self) -> concurrent.futures.Future[str]:
        """Stop recording, flush, and start sealing; the future gives the SHA-256 hex digest."""
        if not self.sealed:
            for frame in self.aligner.drain(frame=self._frame):
                self._enqueue(frame)
            if self._gap:
                self.frames_queued += 1
                self._queue.append(bytes(4 * FRAME_SAMPLES * self._gap))
                self._gap = 0
            self.sealed = True
            self.writer.submit(self, "seal", self._own_writer)
        return self._done

    def seal(self, timeout: float | None = None) -> str:
        """Seal and wait (blocking): final sizes, fsync, ``<file>.sha256``; returns the SHA-256."""
        future = self.seal_start()
        if self._own_writer and self.writer._thread is None:
            self.writer.run_pending()
        return future.result(timeout)

    async def seal_async(self) -> str:
        """:meth:`seal` without blocking the event loop."""
        return await asyncio.wrap_future(self.seal_start())

    # -- writer-thread side ----------------------------------------------------------------------
    def _open(self) -> None:
        try:
            folder = self.path.parent
            if folder not in self.writer._folders:
                folder.mkdir(parents=True, exist_ok=True)
                self.writer._folders.add(folder)
            # Unbuffered and read-write: the header and audio go straight to the descriptor (as every batched
            # write does), and the seal hashes the file through it.  Each system call here lets the event loop's
            # thread take the interpreter lock and then take it back: a buffered ``open`` also asks for the
            # file's size, position and terminal status, and a second ``open`` for the hash did it all again.
            if _CREATE_FILE is not None:
                self._file = _Descriptor(_CREATE_FILE(os.fsencode(self.path), wav_header(0), 0o666, True))
            else:
                self._file = open(self.path, "w+b", buffering=0)  # noqa: SIM115 - closed in _seal
                _write_all(self._file.fileno(), wav_header(0))
        except OSError as exc:
            log.error("recording %s: cannot open: %s", self.path, exc)
            self._done.set_exception(MediaError(f"{self.path}: cannot open recording: {exc}"))

    def _take_queued(self) -> list[bytes]:
        """Pop the queued frames; those past :attr:`MAX_DATA_BYTES` are counted and left out."""
        popleft = self._queue.popleft
        frames = [popleft() for _ in repeat(None, len(self._queue))]
        if self._data_bytes + sum(map(len, frames)) > self.MAX_DATA_BYTES:
            room = self.MAX_DATA_BYTES - self._data_bytes
            kept = []
            for frame in frames:
                if room <= 0:
                    break
                kept.append(frame[:room])
                room -= len(kept[-1])
            lost = sum(map(len, frames)) - sum(map(len, kept))
            self.frames_failed += lost // self._stereo_bytes
            self.frames_written += len(frames) - len(kept)
            if not self._full:
                self._full = True
                log.error("recording %s: WAV size limit (4 GiB, %.1f h) reached; the audio after it is not "
                          "recorded", self.path, self.MAX_DATA_BYTES / (4 * RATE) / 3600)
            frames = kept
        return frames

    def _write_queued(self) -> None:
        frames = self._take_queued()
        if frames:
            self._write(frames)

    def _write(self, frames: list[bytes]) -> None:
        f = self._file
        if f is None:
            self.frames_written += len(frames)
            return
        data = b"".join(frames)
        fd = f.fileno()
        try:
            _write_all(fd, data)  # straight to the file descriptor (the file is unbuffered)
        except OSError as exc:
            self._write_failed(len(data), exc)
            self._data_bytes += len(data)
            self._since_patch += len(frames)
            self._since_fsync += len(frames)
            self.frames_written += len(frames)
            return
        self._data_bytes += len(data)
        self._since_patch += len(frames)
        self._since_fsync += len(frames)
        try:
            if self._since_patch >= self.PATCH_EVERY:
                self._patch_sizes()
            if self._since_fsync >= self.FSYNC_EVERY:
                self._since_fsync = 0
                os.fsync(fd)
        except OSError as exc:
            log.error("recording %s: write failed: %s", self.path, exc)
        self.frames_written += len(frames)

    def _write_failed(self, size: int, error: OSError) -> None:
        """A write of ``size`` bytes failed (full disk, I/O error), perhaps half-way through a frame.

        Their place in the file is kept: the next write goes where they end, so a partial write never
        shifts what follows by part of a sample frame (the two channels would swap or garble), and the
        file keeps wall-clock time.  The part never written is a hole, read as digital silence.
        Counted in ``frames_failed`` (and in ``frames_dropped`` once sealed); logged once per 100 failures.
        """
        self.frames_failed += size // self._stereo_bytes
        self._write_errors += 1
        if self._write_errors == 1 or self._write_errors % 100 == 0:
            log.error("recording %s: write failed (%d times, %.2f s of audio lost so far): %s", self.path,
                      self._write_errors, self.frames_failed * FRAME_SAMPLES / 8000, error)
        f = self._file
        assert f is not None
        try:
            os.lseek(f.fileno(), HEADER_SIZE + self._data_bytes + size, os.SEEK_SET)
        except OSError as exc:
            log.error("recording %s: cannot seek past a failed write: %s", self.path, exc)

    def _plan_write(self, frames: list[bytes]) -> tuple[int, bytes | None, bool]:
        """What :meth:`_write` would do for ``frames``: (bytes, the size patch or None, fsync?)."""
        n = len(frames)
        size = sum(map(len, frames))
        patch = None
        if self._since_patch + n >= self.PATCH_EVERY:
            patch = _size_patch(self._data_bytes + size)
        return size, patch, self._since_fsync + n >= self.FSYNC_EVERY

    def _wrote(self, frames: list[bytes], plan: tuple[int, bytes | None, bool], stage: int, err: int) -> None:
        """Account for a batched write of ``frames`` (``stage``: 0 done, else 1 write, 2 patch or 3 fsync
        failed with ``err``), exactly as :meth:`_write` does on the same outcome."""
        n = len(frames)
        size, patch, fsync = plan
        if stage == 1:  # nothing after the write was attempted
            self._write_failed(size, OSError(err, os.strerror(err)))
            patch, fsync = None, False
        self._data_bytes += size
        self._since_patch = 0 if patch is not None else self._since_patch + n
        self._since_fsync = 0 if fsync and stage != 2 else self._since_fsync + n
        if stage > 1:
            log.error("recording %s: write failed: %s", self.path, OSError(err, os.strerror(err)))
        self.frames_written += n

    def _patch_sizes(self) -> None:
        f = self._file
        assert f is not None
        self._since_patch = 0
        fd = f.fileno()
        os.pwrite(fd, struct.pack("<I", 36 + self._data_bytes), 4)
        os.pwrite(fd, struct.pack("<I", self._data_bytes), 40)

    def _finish_file(self, *, sync: bool = True) -> None:
        """Final sizes on disk (seal and shutdown alike): the open file cut to the audio's length if the last
        writes may have failed, its header patched, fsync'd (unless a batched seal syncs it)."""
        f = self._file
        assert f is not None
        if self._write_errors:
            os.ftruncate(f.fileno(), HEADER_SIZE + self._data_bytes)
        self._patch_sizes()
        if sync:
            os.fsync(f.fileno())

    def _close_unsealed(self) -> None:
        """The writer stops with this recording open (shutdown mid-call): write what is queued, patch the
        sizes, fsync and close.  Not hashed: the start-up recovery hashes and links it, as after a crash."""
        self._write_queued()
        f = self._file
        if f is not None:
            try:
                self._finish_file()
            except OSError as exc:
                log.error("recording %s: cannot finish it at shutdown: %s", self.path, exc)
            finally:
                self._file = None
                f.close()
            log.warning("recording %s: still open when the disk writer stopped; closed unsealed (%.1f s)",
                        self.path, self._data_bytes / (4 * RATE))
        if not self._done.done():
            self._done.set_exception(MediaError(f"{self.path}: the disk writer stopped before it was sealed"))

    def _seal(self, stop_writer: bool) -> None:
        try:
            if self._file is not None:
                self._finish_file()
                self._close_and_hash()
                write_durably(*self._sha256_file())
                self._seal_done()
        except OSError as exc:
            self._seal_failed(exc)
        if stop_writer:
            self.writer._stopping = True
            self.writer._wake.set()

    def _close_and_hash(self) -> None:
        """Hash the finished file as it is on disk (read back through its descriptor), then close it."""
        f = self._file
        assert f is not None
        digest = hashlib.sha256()
        size = 0
        fd = f.fileno()
        while chunk := os.pread(fd, 1 << 20, size):
            digest.update(chunk)
            size += len(chunk)
        self._file = None
        f.close()
        self.sha256 = digest.hexdigest()
        self.size = size

    def _seal_stage(self) -> Path | None:
        """A batched seal's first half (DiskWriter._seal_batch): sizes patched, file closed and hashed, the
        ``.sha256`` written under a temporary name; nothing synced yet.  None when there is nothing to seal."""
        f = self._file
        if f is None:
            return None
        if _SEAL_READ is None or self._write_errors or not isinstance(f, _Descriptor):
            self._finish_file(sync=False)
            self._close_and_hash()
        else:  # the same steps, the system calls in two runs (patch, read back, close; then the .sha256)
            self._since_patch = 0
            data = _SEAL_READ(f.fileno(), _size_patch(self._data_bytes), _SEAL_READ_MAX)
            if data is None:  # a long recording: hashed in 1 MiB reads
                self._close_and_hash()
            else:
                self._file = None
                f.fd = -1  # closed by seal_read: never closed again (the number may be another file's by now)
                self.sha256 = hashlib.sha256(data).hexdigest()
                self.size = len(data)
        return write_staged(*self._sha256_file(), sync=False)

    def _sha256_file(self) -> tuple[Path, bytes]:
        """The ``.sha256`` beside the recording and its line (``sha256sum -c`` format)."""
        return Path(f"{self.path}.sha256"), f"{self.sha256}  {self.path.name}\n".encode()

    def _drop_file(self) -> None:
        """Close the open file, if any, after a failure (a second error closing it changes nothing)."""
        f, self._file = self._file, None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass

    def _seal_done(self) -> None:
        # The loop thread no longer touches the counter: the audio the disk lost is reported with the audio
        # dropped before it reached the disk.
        self.frames_dropped += self.frames_failed
        if not self._done.done():
            self._done.set_result(self.sha256)

    def _seal_failed(self, exc: OSError) -> None:
        self._drop_file()
        if not self._done.done():
            self._done.set_exception(MediaError(f"{self.path}: cannot seal recording: {exc}"))

    @property
    def duration(self) -> float:
        """Seconds of audio produced so far."""
        return self.aligner.frames * FRAME_SAMPLES / 8000

    @staticmethod
    def data_offset() -> int:
        """Offset of the sample data in files this class writes."""
        return HEADER_SIZE
