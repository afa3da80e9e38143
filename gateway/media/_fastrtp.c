/* The RTP relay's hot path in C: an optional accelerator for gateway/media/session.py.
 *
 * A Reader is what the event loop calls when an RTP socket is readable (the pure-Python _Reader does
 * the same job).  It reads one datagram and, when the packet is the steady-state case of a bridged
 * call, does what MediaLeg._receive_rtp, ReceiveStats.update and RtpSender.relay would do for it,
 * line for line, on the very same Python objects: it reads and writes their __slots__ in place (the
 * offsets come from the classes' member descriptors, checked once by bind()).  Every other packet
 * (first packets, a new source, a sequence jump, DTMF, comfort noise, a prompt playing, RTCP, an
 * unlatched or moved source, anything malformed) is handed unchanged to the Python handler, before
 * anything was modified.  So the Python code stays the definition of the behaviour; tests compare
 * the two on the same packet sequences (tests/media/test_fastrtp.py).
 *
 * IPv4 only (the engine uses the Python reader for IPv6).  No state of its own besides cached
 * socket addresses keyed by the identity of the tuple they were parsed from.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------------- */
/* slot offsets, resolved by bind()                                                               */

enum {
    L_STATS, L_REMOTE, L_LATCHED, L_LAST_RX_AT, L_MEDIA, L_PT, L_RX, L_RX_SSRC, L_SILENT,
    L_LAST_AUDIO_AT, L_PEER, L_SENDS, L_PLAYER, L_CODEC, L_SENDER, L_RTP_FD, L_LAST_RELAY_OUT,
    L_RECORDER, L_RECORD_SIDE, L_CLOSED, L_NAME, L_BRIDGE, L_KEEPALIVE, L_SILENCE_TIMEOUT, L_SILENCE_REF,
    L_NEXT_RTCP, L_COUNT
};
static const char *leg_names[L_COUNT] = {
    "stats_counters", "remote", "latched", "_last_rx_at", "media", "_pt", "rx", "rx_ssrc", "silent",
    "_last_audio_at", "_peer", "_sends", "_player", "_codec", "sender", "_rtp_fd", "_last_relay_out",
    "recorder", "record_side", "closed", "name", "bridge", "keepalive", "silence_timeout", "_silence_ref",
    "_next_rtcp"};

enum { C_PACKETS_IN, C_OCTETS_IN, C_RELAYED_OUT, C_PACKETS_OUT, C_OCTETS_OUT, C_SEND_ERRORS, C_COUNT };
static const char *counter_names[C_COUNT] = {
    "packets_in", "octets_in", "relayed_out", "packets_out", "octets_out", "send_errors"};

enum { R_NEXT_SEQ, R_PROBATION, R_CYCLES, R_MAX_SEQ, R_RECEIVED, R_JITTER, R_TRANSIT, R_CLOCK_RATE, R_COUNT };
static const char *rx_names[R_COUNT] = {
    "_next_seq", "probation", "cycles", "max_seq", "received", "jitter", "_transit", "clock_rate"};

enum {
    S_TS_OFFSET, S_RELAYING, S_SOURCE_SSRC, S_LAST_TS, S_SEQ_OFFSET, S_MAX_SEQ, S_NEXT_SEQ, S_LAST_SAMPLES,
    S_LAST_NOW, S_PACKETS, S_OCTETS, S_PAYLOAD_TYPE, S_SSRC, S_COUNT
};
static const char *sender_names[S_COUNT] = {
    "ts_offset", "relaying", "source_ssrc", "last_ts", "seq_offset", "_max_seq", "next_seq", "last_samples",
    "last_now", "packets", "octets", "payload_type", "ssrc"};

typedef struct {
    int bound;
    PyTypeObject *leg_cls, *stats_cls, *rx_cls, *sender_cls;
    Py_ssize_t leg[L_COUNT], counter[C_COUNT], rx[R_COUNT], sender[S_COUNT];
    long long resync_samples;
    unsigned char u2a[256], a2u[256];
    PyObject *pcmu, *pcma;   /* interned "PCMU" / "PCMA" */
    PyObject *logger;        /* logging.Logger for debug messages */
    PyObject *s_push, *s_debug;
} State;

static State st;

#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

static inline void slot_set(PyObject *obj, Py_ssize_t off, PyObject *value /* stolen */)
{
    PyObject **p = (PyObject **)((char *)obj + off);
    PyObject *old = *p;
    *p = value;
    Py_XDECREF(old);
}

/* An exact int slot as long long; 0 on success, -1 (no exception left set) when the slot is unset, not
 * an int, or out of range: the caller then takes the Python path. */
static inline int slot_ll(PyObject *obj, Py_ssize_t off, long long *out)
{
    PyObject *v = SLOT(obj, off);
    if (v == NULL || !PyLong_CheckExact(v))
        return -1;
    int overflow = 0;
    *out = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || (*out == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return -1;
    }
    return 0;
}

static inline int is_true(PyObject *v) { return v == Py_True; }
static inline int is_false(PyObject *v) { return v == Py_False; }

static inline int slot_set_ll(PyObject *obj, Py_ssize_t off, long long value)
{
    PyObject *v = PyLong_FromLongLong(value);
    if (v == NULL)
        return -1;
    slot_set(obj, off, v);
    return 0;
}

static inline int slot_add(PyObject *obj, Py_ssize_t off, long long delta)
{
    long long v;
    if (slot_ll(obj, off, &v) < 0) {
        /* Checked before anything was changed; can only fail if another thread broke the slot. */
        PyErr_SetString(PyExc_RuntimeError, "fastrtp: counter slot is not an int");
        return -1;
    }
    return slot_set_ll(obj, off, v + delta);
}

static inline void slot_set_obj(PyObject *obj, Py_ssize_t off, PyObject *value /* borrowed */)
{
    Py_INCREF(value);
    slot_set(obj, off, value);
}

static int resolve(PyTypeObject *cls, const char **names, int count, Py_ssize_t *offsets)
{
    for (int i = 0; i < count; i++) {
        PyObject *descr = PyObject_GetAttrString((PyObject *)cls, names[i]);
        if (descr == NULL)
            return -1;
        if (!Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
            PyErr_Format(PyExc_TypeError, "%s.%s is not a __slots__ member", cls->tp_name, names[i]);
            Py_DECREF(descr);
            return -1;
        }
        PyMemberDef *m = ((PyMemberDescrObject *)descr)->d_member;
        if (m->type != T_OBJECT_EX || (m->flags & READONLY)) {
            PyErr_Format(PyExc_TypeError, "%s.%s is not a writable object slot", cls->tp_name, names[i]);
            Py_DECREF(descr);
            return -1;
        }
        offsets[i] = m->offset;
        Py_DECREF(descr);
    }
    return 0;
}

static int table_from(PyObject *obj, unsigned char *out)
{
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0)
        return -1;
    if (view.len != 256) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "a transcoding table has 256 entries");
        return -1;
    }
    memcpy(out, view.buf, 256);
    PyBuffer_Release(&view);
    return 0;
}

PyDoc_STRVAR(bind_doc,
"bind(leg_cls, stats_cls, rx_cls, sender_cls, ulaw_to_alaw, alaw_to_ulaw, logger)\n\n"
"Resolve the __slots__ the fast path reads and writes; raises TypeError if a class changed shape.");

static PyObject *fastrtp_bind(PyObject *module, PyObject *args)
{
    PyTypeObject *leg_cls, *stats_cls, *rx_cls, *sender_cls;
    PyObject *u2a, *a2u, *logger;
    if (!PyArg_ParseTuple(args, "O!O!O!O!OOO", &PyType_Type, &leg_cls, &PyType_Type, &stats_cls, &PyType_Type,
                          &rx_cls, &PyType_Type, &sender_cls, &u2a, &a2u, &logger))
        return NULL;
    State s = {0};
    if (resolve(leg_cls, leg_names, L_COUNT, s.leg) < 0 || resolve(stats_cls, counter_names, C_COUNT, s.counter) < 0
        || resolve(rx_cls, rx_names, R_COUNT, s.rx) < 0 || resolve(sender_cls, sender_names, S_COUNT, s.sender) < 0
        || table_from(u2a, s.u2a) < 0 || table_from(a2u, s.a2u) < 0)
        return NULL;
    PyObject *resync = PyObject_GetAttrString((PyObject *)sender_cls, "RESYNC_SAMPLES");
    if (resync == NULL)
        return NULL;
    s.resync_samples = PyLong_AsLongLong(resync);
    Py_DECREF(resync);
    if (s.resync_samples == -1 && PyErr_Occurred())
        return NULL;
    s.pcmu = PyUnicode_InternFromString("PCMU");
    s.pcma = PyUnicode_InternFromString("PCMA");
    s.s_push = PyUnicode_InternFromString("push");
    s.s_debug = PyUnicode_InternFromString("debug");
    if (!s.pcmu || !s.pcma || !s.s_push || !s.s_debug)
        return NULL;
    Py_INCREF(leg_cls);
    Py_INCREF(stats_cls);
    Py_INCREF(rx_cls);
    Py_INCREF(sender_cls);
    Py_INCREF(logger);
    s.leg_cls = leg_cls;
    s.stats_cls = stats_cls;
    s.rx_cls = rx_cls;
    s.sender_cls = sender_cls;
    s.logger = logger;
    s.bound = 1;
    /* A second bind (tests reloading) leaks the first one's few references: harmless. */
    st = s;
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------------------------------------- */
/* the recorder's frame: StereoAligner._pull on both sides + StereoRecorder._frame's G.711 decode    */

enum { A_FIFO, A_PLAYING, A_PUSHED, A_QUIET_TICKS, A_UNDERRUNS, A_DROPPED_SAMPLES, A_SILENCE, A_PROMPT, A_COUNT };
static const char *side_names[A_COUNT] = {
    "fifo", "playing", "pushed", "quiet_ticks", "underruns", "dropped_samples", "silence", "prompt"};
static Py_ssize_t side_off[A_COUNT];
static PyTypeObject *side_cls;

PyDoc_STRVAR(bind_aligner_doc,
"bind_aligner(side_cls)\n\nResolve the __slots__ of the aligner's per-side state (gateway.media.aligner._Side).");

static PyObject *fastrtp_bind_aligner(PyObject *module, PyObject *arg)
{
    Py_ssize_t off[A_COUNT];
    if (!PyType_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "bind_aligner() takes a class");
        return NULL;
    }
    if (resolve((PyTypeObject *)arg, side_names, A_COUNT, off) < 0)
        return NULL;
    memcpy(side_off, off, sizeof off);
    Py_INCREF(arg);
    Py_XSETREF(side_cls, (PyTypeObject *)arg);
    Py_RETURN_NONE;
}

/* Checks every slot pull() touches; 0 when all are what the Python code keeps there. */
static int side_ok(PyObject *side, Py_ssize_t frame_bytes)
{
    long long v;
    if (side_cls == NULL || !PyObject_TypeCheck(side, side_cls))
        return -1;
    PyObject *fifo = SLOT(side, side_off[A_FIFO]), *silence = SLOT(side, side_off[A_SILENCE]);
    PyObject *playing = SLOT(side, side_off[A_PLAYING]), *pushed = SLOT(side, side_off[A_PUSHED]);
    if (fifo == NULL || !PyByteArray_CheckExact(fifo) || silence == NULL || !PyBytes_CheckExact(silence)
        || PyBytes_GET_SIZE(silence) != frame_bytes || playing == NULL || (!is_true(playing) && !is_false(playing))
        || pushed == NULL || (!is_true(pushed) && !is_false(pushed))
        || slot_ll(side, side_off[A_QUIET_TICKS], &v) < 0 || slot_ll(side, side_off[A_UNDERRUNS], &v) < 0
        || slot_ll(side, side_off[A_DROPPED_SAMPLES], &v) < 0)
        return -1;
    return 0;
}

/* StereoAligner._pull for one-byte samples, writing the decoded 16-bit samples of the voice it returns to
 * out[0], out[1] (lo, hi bytes) every 4 bytes.  A side that returns its silence frame decodes to zero. */
static int pull_decode(PyObject *side, Py_ssize_t fb, Py_ssize_t prefill, Py_ssize_t max_bytes,
                       const unsigned char *lo, const unsigned char *hi, unsigned char *out)
{
    PyObject *fifo = SLOT(side, side_off[A_FIFO]);
    const unsigned char *silence = (const unsigned char *)PyBytes_AS_STRING(SLOT(side, side_off[A_SILENCE]));
    long long quiet;
    if (is_true(SLOT(side, side_off[A_PUSHED]))) {
        quiet = 0;
        slot_set_obj(side, side_off[A_PUSHED], Py_False);
    } else {
        if (slot_ll(side, side_off[A_QUIET_TICKS], &quiet) < 0)
            return -1;
        quiet += 1;
    }
    if (slot_set_ll(side, side_off[A_QUIET_TICKS], quiet) < 0)
        return -1;
    Py_ssize_t len = PyByteArray_GET_SIZE(fifo);
    if (len > max_bytes) {
        Py_ssize_t cut = len - prefill;
        if (slot_add(side, side_off[A_DROPPED_SAMPLES], cut) < 0 || PySequence_DelSlice(fifo, 0, cut) < 0)
            return -1;
        len = PyByteArray_GET_SIZE(fifo);
    }
    if (!is_true(SLOT(side, side_off[A_PLAYING]))) {
        if (len >= prefill || (len > 0 && quiet >= 1)) {
            slot_set_obj(side, side_off[A_PLAYING], Py_True);
        } else {
            for (Py_ssize_t i = 0; i < fb; i++)
                out[4 * i] = out[4 * i + 1] = 0;  /* the silence frame itself: digital zero */
            return 0;
        }
    }
    const unsigned char *data = (const unsigned char *)PyByteArray_AS_STRING(fifo);
    if (len >= fb) {
        for (Py_ssize_t i = 0; i < fb; i++) {
            out[4 * i] = lo[data[i]];
            out[4 * i + 1] = hi[data[i]];
        }
        return PySequence_DelSlice(fifo, 0, fb);
    }
    /* underrun: what is left, padded with (decoded) silence; back to prefill.  With nothing left the
     * Python code's voice is the silence frame object itself (b"" + silence[0:]), written as zero. */
    for (Py_ssize_t i = 0; i < fb; i++) {
        unsigned char c = i < len ? data[i] : silence[i];
        out[4 * i] = len ? lo[c] : 0;
        out[4 * i + 1] = len ? hi[c] : 0;
    }
    if (PySequence_DelSlice(fifo, 0, len) < 0)
        return -1;
    slot_set_obj(side, side_off[A_PLAYING], Py_False);
    if (quiet == 0 && slot_add(side, side_off[A_UNDERRUNS], 1) < 0)
        return -1;
    return 0;
}

static const unsigned char *table256(PyObject *obj)
{
    if (!PyBytes_CheckExact(obj) || PyBytes_GET_SIZE(obj) != 256)
        return NULL;
    return (const unsigned char *)PyBytes_AS_STRING(obj);
}

PyDoc_STRVAR(g711_frame_doc,
"g711_frame(left, right, frame_bytes, prefill_bytes, max_bytes, llo, lhi, rlo, rhi) -> bytes | None\n\n"
"One stereo 16-bit frame from two G.711 aligner sides (what StereoAligner.tick_parts and\n"
"StereoRecorder._frame do when no prompt is queued); None, with nothing changed, when a side's state\n"
"is not what the Python code keeps (the caller then runs the Python code).");

/* The frame, or Py_None (new reference) with nothing changed when a side is not in the expected shape. */
static PyObject *build_frame(PyObject *left, PyObject *right, PyObject *fb_obj, PyObject *prefill_obj,
                             PyObject *max_obj, PyObject *llo_obj, PyObject *lhi_obj, PyObject *rlo_obj,
                             PyObject *rhi_obj)
{
    Py_ssize_t fb = PyLong_AsSsize_t(fb_obj), prefill = PyLong_AsSsize_t(prefill_obj),
               max_bytes = PyLong_AsSsize_t(max_obj);
    if ((fb == -1 || prefill == -1 || max_bytes == -1) && PyErr_Occurred())
        return NULL;
    const unsigned char *llo = table256(llo_obj), *lhi = table256(lhi_obj), *rlo = table256(rlo_obj),
                        *rhi = table256(rhi_obj);
    if (fb <= 0 || prefill < 0 || max_bytes < prefill || !llo || !lhi || !rlo || !rhi || side_ok(left, fb) < 0
        || side_ok(right, fb) < 0)
        Py_RETURN_NONE;
    PyObject *frame = PyBytes_FromStringAndSize(NULL, 4 * fb);
    if (frame == NULL)
        return NULL;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(frame);
    if (pull_decode(left, fb, prefill, max_bytes, llo, lhi, out) < 0
        || pull_decode(right, fb, prefill, max_bytes, rlo, rhi, out + 2) < 0) {
        Py_DECREF(frame);
        return NULL;
    }
    return frame;
}

static PyObject *fastrtp_g711_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "g711_frame() takes 9 arguments");
        return NULL;
    }
    return build_frame(args[0], args[1], args[2], args[3], args[4], args[5], args[6], args[7], args[8]);
}

/* StereoRecorder.tick's plain frame in C: 1 done, 0 Python must do this frame (nothing changed), -1 error.
 * Plain: no prompt queued on either side, the disk backlog not full, no gap pending, the decode tables
 * and aligner sides in the shapes the Python code keeps. */
static int recorder_tick_one(PyObject *rec)
{
    static PyObject *s_aligner, *s_sides, *s_decode, *s_frame_bytes, *s_prefill, *s_max, *s_frames,
        *s_queued, *s_written, *s_pending, *s_gap, *s_queue, *s_append;
    if (s_aligner == NULL) {
        s_aligner = PyUnicode_InternFromString("aligner");
        s_sides = PyUnicode_InternFromString("sides");
        s_decode = PyUnicode_InternFromString("_decode");
        s_frame_bytes = PyUnicode_InternFromString("frame_bytes");
        s_prefill = PyUnicode_InternFromString("prefill_bytes");
        s_max = PyUnicode_InternFromString("max_bytes");
        s_frames = PyUnicode_InternFromString("frames");
        s_queued = PyUnicode_InternFromString("frames_queued");
        s_written = PyUnicode_InternFromString("frames_written");
        s_pending = PyUnicode_InternFromString("max_pending_frames");
        s_gap = PyUnicode_InternFromString("_gap");
        s_queue = PyUnicode_InternFromString("_queue");
        s_append = PyUnicode_InternFromString("append");
        if (!s_aligner || !s_sides || !s_decode || !s_frame_bytes || !s_prefill || !s_max || !s_frames
            || !s_queued || !s_written || !s_pending || !s_gap || !s_queue || !s_append)
            return -1;
    }
    if (side_cls == NULL)
        return 0;
    int rc = 0;
    PyObject *aligner = NULL, *sides = NULL, *decode = NULL, *fb = NULL, *prefill = NULL, *maxb = NULL,
             *frames = NULL, *queued = NULL, *written = NULL, *pending = NULL, *gap = NULL, *queue = NULL,
             *frame = NULL;
    aligner = PyObject_GetAttr(rec, s_aligner);
    if (aligner == NULL)
        goto python;
    sides = PyObject_GetAttr(aligner, s_sides);
    decode = PyObject_GetAttr(rec, s_decode);
    fb = PyObject_GetAttr(aligner, s_frame_bytes);
    prefill = PyObject_GetAttr(aligner, s_prefill);
    maxb = PyObject_GetAttr(aligner, s_max);
    frames = PyObject_GetAttr(aligner, s_frames);
    queued = PyObject_GetAttr(rec, s_queued);
    written = PyObject_GetAttr(rec, s_written);
    pending = PyObject_GetAttr(rec, s_pending);
    gap = PyObject_GetAttr(rec, s_gap);
    queue = PyObject_GetAttr(rec, s_queue);
    if (!sides || !decode || !fb || !prefill || !maxb || !frames || !queued || !written || !pending || !gap || !queue)
        goto python;
    if (!PyTuple_CheckExact(sides) || PyTuple_GET_SIZE(sides) != 2 || !PyList_CheckExact(decode)
        || PyList_GET_SIZE(decode) != 2 || !PyLong_CheckExact(frames) || !PyLong_CheckExact(queued)
        || !PyLong_CheckExact(written) || !PyLong_CheckExact(pending) || !PyLong_CheckExact(gap)
        || PyLong_AsLong(gap) != 0)
        goto python;
    PyObject *left = PyTuple_GET_ITEM(sides, 0), *right = PyTuple_GET_ITEM(sides, 1);
    PyObject *ld = PyList_GET_ITEM(decode, 0), *rd = PyList_GET_ITEM(decode, 1);
    if (!PyObject_TypeCheck(left, side_cls) || !PyObject_TypeCheck(right, side_cls)
        || !PyTuple_CheckExact(ld) || PyTuple_GET_SIZE(ld) != 2 || !PyTuple_CheckExact(rd) || PyTuple_GET_SIZE(rd) != 2)
        goto python;
    PyObject *lp = SLOT(left, side_off[A_PROMPT]), *rp = SLOT(right, side_off[A_PROMPT]);
    if (lp == NULL || rp == NULL || !PyByteArray_CheckExact(lp) || !PyByteArray_CheckExact(rp)
        || PyByteArray_GET_SIZE(lp) || PyByteArray_GET_SIZE(rp))
        goto python;
    long long q = PyLong_AsLongLong(queued), w = PyLong_AsLongLong(written), mp = PyLong_AsLongLong(pending),
              f = PyLong_AsLongLong(frames);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        goto python;
    }
    if (q - w >= mp)
        goto python;  /* the backlog is full: Python drops the frame to disk, loudly */
    frame = build_frame(left, right, fb, prefill, maxb, PyTuple_GET_ITEM(ld, 0), PyTuple_GET_ITEM(ld, 1),
                        PyTuple_GET_ITEM(rd, 0), PyTuple_GET_ITEM(rd, 1));
    if (frame == NULL) {
        rc = -1;
        goto out;
    }
    if (frame == Py_None)
        goto python;
    /* as StereoRecorder._frame (aligner.frames += 1) then _enqueue (frames_queued += 1, queue it) */
    PyObject *n = PyLong_FromLongLong(f + 1);
    if (n == NULL || PyObject_SetAttr(aligner, s_frames, n) < 0) {
        Py_XDECREF(n);
        rc = -1;
        goto out;
    }
    Py_DECREF(n);
    n = PyLong_FromLongLong(q + 1);
    if (n == NULL || PyObject_SetAttr(rec, s_queued, n) < 0) {
        Py_XDECREF(n);
        rc = -1;
        goto out;
    }
    Py_DECREF(n);
    PyObject *r = PyObject_CallMethodOneArg(queue, s_append, frame);
    if (r == NULL) {
        rc = -1;
        goto out;
    }
    Py_DECREF(r);
    rc = 1;
    goto out;
python:
    PyErr_Clear();
    rc = 0;
out:
    Py_XDECREF(aligner);
    Py_XDECREF(sides);
    Py_XDECREF(decode);
    Py_XDECREF(fb);
    Py_XDECREF(prefill);
    Py_XDECREF(maxb);
    Py_XDECREF(frames);
    Py_XDECREF(queued);
    Py_XDECREF(written);
    Py_XDECREF(pending);
    Py_XDECREF(gap);
    Py_XDECREF(queue);
    Py_XDECREF(frame);
    return rc;
}

PyDoc_STRVAR(tick_recorders_doc,
"tick_recorders(recorders, count) -> list\n\n"
"recorder.tick(count) for each recorder not sealed, each plain frame made in C (the others by\n"
"recorder.tick(1)); returns the sealed recorders, in order.");

static PyObject *fastrtp_tick_recorders(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    static PyObject *s_sealed, *s_tick;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "tick_recorders() takes 2 arguments");
        return NULL;
    }
    if (s_sealed == NULL) {
        s_sealed = PyUnicode_InternFromString("sealed");
        s_tick = PyUnicode_InternFromString("tick");
        if (s_sealed == NULL || s_tick == NULL)
            return NULL;
    }
    Py_ssize_t count = PyLong_AsSsize_t(args[1]);
    if (count == -1 && PyErr_Occurred())
        return NULL;
    PyObject *seq = PySequence_Fast(args[0], "tick_recorders() takes a sequence of recorders");
    if (seq == NULL)
        return NULL;
    PyObject *sealed_list = PyList_New(0), *one = PyLong_FromLong(1);
    if (sealed_list == NULL || one == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *rec = PySequence_Fast_GET_ITEM(seq, i);
        PyObject *sealed = PyObject_GetAttr(rec, s_sealed);
        int is_sealed = sealed == NULL ? -1 : PyObject_IsTrue(sealed);
        Py_XDECREF(sealed);
        if (is_sealed < 0)
            goto fail;
        if (is_sealed) {
            if (PyList_Append(sealed_list, rec) < 0)
                goto fail;
            continue;
        }
        for (Py_ssize_t c = 0; c < count; c++) {
            int done = recorder_tick_one(rec);
            if (done < 0)
                goto fail;
            if (!done) {
                PyObject *r = PyObject_CallMethodOneArg(rec, s_tick, one);
                if (r == NULL)
                    goto fail;
                Py_DECREF(r);
            }
        }
    }
    Py_DECREF(seq);
    Py_DECREF(one);
    return sealed_list;
fail:
    Py_DECREF(seq);
    Py_XDECREF(one);
    Py_XDECREF(sealed_list);
    return NULL;
}

/* ---------------------------------------------------------------------------------------------- */
/* the clock's pass over the legs                                                                 */

/* A float or int slot as a double; -1 when it is neither (the caller then lets Python decide). */
static inline int slot_num(PyObject *obj, Py_ssize_t off, double *out)
{
    PyObject *v = SLOT(obj, off);
    if (v != NULL && PyFloat_CheckExact(v)) {
        *out = PyFloat_AS_DOUBLE(v);
        return 0;
    }
    if (v != NULL && PyLong_CheckExact(v)) {
        *out = PyLong_AsDouble(v);
        if (*out == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return -1;
        }
        return 0;
    }
    return -1;
}

static inline int is_bool(PyObject *v) { return v == Py_True || v == Py_False; }

/* 1 when MediaLeg._tick(now, frames, may_keepalive) would do nothing at all: no prompt playing, no
 * keep-alive due, no silence to report, no RTCP due.  0 when Python must run it. */
static int leg_idle(PyObject *leg, double now, int may_keepalive, double keepalive_after)
{
    if (SLOT(leg, st.leg[L_PLAYER]) != Py_None)
        return 0;
    if (may_keepalive) {
        PyObject *bridge = SLOT(leg, st.leg[L_BRIDGE]), *ka = SLOT(leg, st.leg[L_KEEPALIVE]);
        PyObject *sends = SLOT(leg, st.leg[L_SENDS]);
        if (bridge == NULL || ka == NULL || sends == NULL || !is_bool(ka) || !is_bool(sends))
            return 0;
        if ((bridge != Py_None || ka == Py_True) && sends == Py_True) {
            double last;
            if (slot_num(leg, st.leg[L_LAST_RELAY_OUT], &last) < 0 || now - last >= keepalive_after)
                return 0;
        }
    }
    PyObject *media = SLOT(leg, st.leg[L_MEDIA]), *silent = SLOT(leg, st.leg[L_SILENT]);
    if (media == NULL)
        return 0;
    if (media == Py_None)
        return 1;
    if (silent == NULL || !is_bool(silent))
        return 0;
    if (silent == Py_False) {
        PyObject *last_audio = SLOT(leg, st.leg[L_LAST_AUDIO_AT]);
        double ref, timeout;
        if (last_audio == NULL
            || slot_num(leg, st.leg[last_audio != Py_None ? L_LAST_AUDIO_AT : L_SILENCE_REF], &ref) < 0
            || slot_num(leg, st.leg[L_SILENCE_TIMEOUT], &timeout) < 0 || now - ref >= timeout)
            return 0;
    }
    double next_rtcp;
    if (slot_num(leg, st.leg[L_NEXT_RTCP], &next_rtcp) < 0 || now >= next_rtcp)
        return 0;
    return 1;
}

PyDoc_STRVAR(tick_legs_doc,
"tick_legs(legs, now, frames, may_keepalive, keepalive_after)\n\n"
"For each leg that is not closed: leg._tick(now, frames, may_keepalive), skipped (in C) for a leg on\n"
"which it would do nothing.");

static PyObject *fastrtp_tick_legs(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    static PyObject *s_tick, *s_closed;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "tick_legs() takes 5 arguments");
        return NULL;
    }
    if (s_tick == NULL) {
        s_tick = PyUnicode_InternFromString("_tick");
        s_closed = PyUnicode_InternFromString("closed");
        if (s_tick == NULL || s_closed == NULL)
            return NULL;
    }
    PyObject *legs = args[0], *now_obj = args[1], *frames = args[2], *ka_obj = args[3];
    double now = PyFloat_AsDouble(now_obj), keepalive_after = PyFloat_AsDouble(args[4]);
    if ((now == -1.0 || keepalive_after == -1.0) && PyErr_Occurred())
        return NULL;
    int may_keepalive = PyObject_IsTrue(ka_obj);
    if (may_keepalive < 0)
        return NULL;
    PyObject *seq = PySequence_Fast(legs, "tick_legs() takes a sequence of legs");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *leg = PySequence_Fast_GET_ITEM(seq, i);
        int exact = st.bound && PyObject_TypeCheck(leg, st.leg_cls) && is_bool(SLOT(leg, st.leg[L_CLOSED]));
        if (exact) {
            if (SLOT(leg, st.leg[L_CLOSED]) == Py_True || leg_idle(leg, now, may_keepalive, keepalive_after))
                continue;
        } else {
            PyObject *closed = PyObject_GetAttr(leg, s_closed);
            int is_closed = closed == NULL ? -1 : PyObject_IsTrue(closed);
            Py_XDECREF(closed);
            if (is_closed < 0) {
                Py_DECREF(seq);
                return NULL;
            }
            if (is_closed)
                continue;
        }
        PyObject *r = PyObject_CallMethodObjArgs(leg, s_tick, now_obj, frames, ka_obj, NULL);
        if (r == NULL) {
            Py_DECREF(seq);
            return NULL;
        }
        Py_DECREF(r);
    }
    Py_DECREF(seq);
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------------------------------------- */
/* the disk writer's batch: every recording's frames, size patch and fsync, in one GIL-free call    */

typedef struct {
    int fd;
    Py_ssize_t first, count;  /* this item's frames in the flat arrays */
    unsigned char patch[8];
    int has_patch, do_fsync;
    int stage, err;           /* result: 0 ok, or the stage that failed (1 write, 2 patch, 3 fsync) and errno */
} WriteItem;

static int write_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        int chunk = n > IOV_MAX ? IOV_MAX : n;
        ssize_t done = writev(fd, iov, chunk);
        if (done < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        while (chunk > 0 && (size_t)done >= iov->iov_len) {
            done -= (ssize_t)iov->iov_len;
            iov++;
            n--;
            chunk--;
        }
        if (done > 0) {  /* a partial write: the rest of this buffer next */
            iov->iov_base = (char *)iov->iov_base + done;
            iov->iov_len -= (size_t)done;
        }
    }
    return 0;
}

PyDoc_STRVAR(write_batch_doc,
"write_batch(items) -> list[tuple[int, int]]\n\n"
"items: (fd, frames, patch, fsync) per recording: append the frames (bytes) at the file's offset; if\n"
"patch (8 bytes: RIFF size, data size, little-endian) write it at offsets 4 and 40; if fsync, fsync.\n"
"The GIL is released for all the system calls.  Returns (stage, errno) per item: (0, 0) when all\n"
"was done, else the first stage that failed (1 write, 2 patch, 3 fsync) and its errno.");

static PyObject *fastrtp_write_batch(PyObject *module, PyObject *arg)
{
    PyObject *items = PySequence_Fast(arg, "write_batch() takes a sequence");
    if (items == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(items), total = 0;
    WriteItem *w = PyMem_Calloc((size_t)(n ? n : 1), sizeof(WriteItem));
    PyObject **held = NULL;
    struct iovec *iov = NULL;
    PyObject *result = NULL;
    if (w == NULL) {
        Py_DECREF(items);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(items, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 4 || !PyList_Check(PyTuple_GET_ITEM(item, 1))) {
            PyErr_SetString(PyExc_TypeError, "write_batch() items are (fd, [bytes, ...], patch, fsync)");
            goto done;
        }
        total += PyList_GET_SIZE(PyTuple_GET_ITEM(item, 1));
    }
    held = PyMem_Calloc((size_t)(total ? total : 1), sizeof(PyObject *));
    iov = PyMem_Calloc((size_t)(total ? total : 1), sizeof(struct iovec));
    if (held == NULL || iov == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(items, i), *frames = PyTuple_GET_ITEM(item, 1);
        PyObject *patch = PyTuple_GET_ITEM(item, 2);
        w[i].fd = PyLong_AsLong(PyTuple_GET_ITEM(item, 0));
        if (w[i].fd == -1 && PyErr_Occurred())
            goto done;
        w[i].do_fsync = PyObject_IsTrue(PyTuple_GET_ITEM(item, 3));
        if (w[i].do_fsync < 0)
            goto done;
        if (patch != Py_None) {
            if (!PyBytes_Check(patch) || PyBytes_GET_SIZE(patch) != 8) {
                PyErr_SetString(PyExc_TypeError, "write_batch(): patch is 8 bytes or None");
                goto done;
            }
            memcpy(w[i].patch, PyBytes_AS_STRING(patch), 8);
            w[i].has_patch = 1;
        }
        w[i].first = k;
        for (Py_ssize_t j = 0; j < PyList_GET_SIZE(frames); j++, k++) {
            PyObject *frame = PyList_GET_ITEM(frames, j);
            if (!PyBytes_Check(frame)) {
                PyErr_SetString(PyExc_TypeError, "write_batch(): frames are bytes");
                goto done;
            }
            Py_INCREF(frame);  /* alive while the GIL is released, whatever happens to the list */
            held[k] = frame;
            iov[k].iov_base = PyBytes_AS_STRING(frame);
            iov[k].iov_len = (size_t)PyBytes_GET_SIZE(frame);
        }
        w[i].count = k - w[i].first;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        int err = write_all(w[i].fd, iov + w[i].first, (int)w[i].count);
        if (err) {
            w[i].stage = 1;
            w[i].err = err;
            continue;
        }
        errno = 0;
        if (w[i].has_patch && (pwrite(w[i].fd, w[i].patch, 4, 4) != 4 || pwrite(w[i].fd, w[i].patch + 4, 4, 40) != 4)) {
            w[i].stage = 2;
            w[i].err = errno ? errno : EIO;
            continue;
        }
        if (w[i].do_fsync && fsync(w[i].fd) != 0) {
            w[i].stage = 3;
            w[i].err = errno;
        }
    }
    Py_END_ALLOW_THREADS
    result = PyList_New(n);
    if (result == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = Py_BuildValue("(ii)", w[i].stage, w[i].err);
        if (t == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, t);
    }
done:
    if (held != NULL) {
        for (Py_ssize_t i = 0; i < total; i++)
            Py_XDECREF(held[i]);
    }
    PyMem_Free(held);
    PyMem_Free(iov);
    PyMem_Free(w);
    Py_DECREF(items);
    return result;
}

/* ---------------------------------------------------------------------------------------------- */
/* Reader                                                                                         */

typedef struct {
    PyObject_HEAD
    int fd;
    PyObject *handler;     /* handler(data, addr, now): the Python path */
    PyObject *clock;       /* clock() -> float seconds */
    PyObject *leg;         /* the MediaLeg whose steady-state packets are relayed here, or None */
    PyObject *remote_key;  /* the leg.remote tuple remote_sa was parsed from */
    struct sockaddr_in remote_sa;
    PyObject *peer_key;    /* the peer.remote tuple peer_sa was parsed from */
    struct sockaddr_in peer_sa;
    unsigned long long fast;  /* packets relayed here */
    unsigned long long slow;  /* packets handed to the handler */
} Reader;

static int parse_addr(PyObject *key, struct sockaddr_in *sa)
{
    if (!PyTuple_CheckExact(key) || PyTuple_GET_SIZE(key) != 2)
        return -1;
    PyObject *host = PyTuple_GET_ITEM(key, 0), *port = PyTuple_GET_ITEM(key, 1);
    if (!PyUnicode_CheckExact(host) || !PyLong_CheckExact(port))
        return -1;
    const char *h = PyUnicode_AsUTF8(host);
    long p = PyLong_AsLong(port);
    if (h == NULL || p < 0 || p > 65535) {
        PyErr_Clear();
        return -1;
    }
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((unsigned short)p);
    if (inet_pton(AF_INET, h, &sa->sin_addr) != 1)
        return -1;
    return 0;
}

/* The cached sockaddr for the tuple in `key`, parsing it when the tuple object changed. */
static int cached_addr(PyObject **cache_key, struct sockaddr_in *cache_sa, PyObject *key)
{
    if (key == *cache_key)
        return 0;
    struct sockaddr_in sa;
    if (parse_addr(key, &sa) < 0)
        return -1;
    Py_INCREF(key);
    Py_XSETREF(*cache_key, key);
    *cache_sa = sa;
    return 0;
}


/* The aligner side a recorder.push(side, payload, codec) would append to, when that push is the plain
 * case (codec unchanged since the last push): 1 with *sides (new reference, keeps *side alive) and *side
 * set; 0 when Python must do the push (nothing changed, no exception left set). */
static int recorder_side(PyObject *recorder, PyObject *record_side, PyObject *codec, PyObject **sides,
                         PyObject **side)
{
    static PyObject *s_codecs, *s_aligner, *s_sides;
    if (s_codecs == NULL) {
        s_codecs = PyUnicode_InternFromString("_codecs");
        s_aligner = PyUnicode_InternFromString("aligner");
        s_sides = PyUnicode_InternFromString("sides");
        if (!s_codecs || !s_aligner || !s_sides) {
            PyErr_Clear();
            return 0;
        }
    }
    if (side_cls == NULL || !PyLong_CheckExact(record_side))
        return 0;
    long index = PyLong_AsLong(record_side);
    if (index != 0 && index != 1) {
        PyErr_Clear();
        return 0;
    }
    PyObject *codecs = PyObject_GetAttr(recorder, s_codecs);
    if (codecs == NULL) {
        PyErr_Clear();
        return 0;
    }
    int same = PyList_CheckExact(codecs) && PyList_GET_SIZE(codecs) == 2
               && PyUnicode_CheckExact(PyList_GET_ITEM(codecs, index))
               && PyUnicode_Compare(PyList_GET_ITEM(codecs, index), codec) == 0;
    Py_DECREF(codecs);
    if (!same) {
        PyErr_Clear();
        return 0;
    }
    PyObject *aligner = PyObject_GetAttr(recorder, s_aligner);
    if (aligner == NULL) {
        PyErr_Clear();
        return 0;
    }
    PyObject *t = PyObject_GetAttr(aligner, s_sides);
    Py_DECREF(aligner);
    if (t == NULL) {
        PyErr_Clear();
        return 0;
    }
    if (!PyTuple_CheckExact(t) || PyTuple_GET_SIZE(t) != 2) {
        Py_DECREF(t);
        return 0;
    }
    PyObject *s = PyTuple_GET_ITEM(t, index);
    PyObject *fifo = PyObject_TypeCheck(s, side_cls) ? SLOT(s, side_off[A_FIFO]) : NULL;
    if (fifo == NULL || !PyByteArray_CheckExact(fifo) || SLOT(s, side_off[A_PUSHED]) == NULL) {
        Py_DECREF(t);
        return 0;
    }
    *sides = t;
    *side = s;
    return 1;
}

/* 1: relayed here; 0: not the steady state (nothing was changed: hand it to Python); -1: error set. */
static int fast_path(Reader *self, const unsigned char *buf, Py_ssize_t n, const struct sockaddr_in *src,
                     PyObject *now_obj, double now)
{
    PyObject *leg = self->leg;
    if (n < 12 || buf[0] != 0x80 || !PyObject_TypeCheck(leg, st.leg_cls))
        return 0;
    /* -- checks: every condition under which _receive_rtp does anything but the steady state -- */
    if (!is_true(SLOT(leg, st.leg[L_LATCHED])))
        return 0;
    PyObject *remote = SLOT(leg, st.leg[L_REMOTE]);
    if (remote == NULL || cached_addr(&self->remote_key, &self->remote_sa, remote) < 0)
        return 0;
    if (src->sin_port != self->remote_sa.sin_port || src->sin_addr.s_addr != self->remote_sa.sin_addr.s_addr)
        return 0;
    PyObject *media = SLOT(leg, st.leg[L_MEDIA]);
    if (media == NULL || media == Py_None)
        return 0;
    PyObject *counters = SLOT(leg, st.leg[L_STATS]);
    if (counters == NULL || !PyObject_TypeCheck(counters, st.stats_cls))
        return 0;
    long long pt_leg, ssrc_leg;
    unsigned int pt = buf[1] & 0x7F, marker = buf[1] & 0x80;
    unsigned long seq = ((unsigned long)buf[2] << 8) | buf[3];
    unsigned long long ts = ((unsigned long long)buf[4] << 24) | ((unsigned long long)buf[5] << 16)
                            | ((unsigned long long)buf[6] << 8) | buf[7];
    unsigned long long ssrc = ((unsigned long long)buf[8] << 24) | ((unsigned long long)buf[9] << 16)
                              | ((unsigned long long)buf[10] << 8) | buf[11];
    if (slot_ll(leg, st.leg[L_PT], &pt_leg) < 0 || (long long)pt != pt_leg)
        return 0;
    PyObject *rx = SLOT(leg, st.leg[L_RX]);
    if (rx == NULL || !PyObject_TypeCheck(rx, st.rx_cls))
        return 0;
    if (slot_ll(leg, st.leg[L_RX_SSRC], &ssrc_leg) < 0 || (unsigned long long)ssrc_leg != ssrc)
        return 0;
    long long next_seq, probation, cycles, received, clock_rate;
    if (slot_ll(rx, st.rx[R_NEXT_SEQ], &next_seq) < 0 || (unsigned long long)next_seq != seq
        || slot_ll(rx, st.rx[R_PROBATION], &probation) < 0 || probation != 0
        || slot_ll(rx, st.rx[R_CYCLES], &cycles) < 0 || slot_ll(rx, st.rx[R_RECEIVED], &received) < 0
        || slot_ll(rx, st.rx[R_CLOCK_RATE], &clock_rate) < 0)
        return 0;
    PyObject *jitter_obj = SLOT(rx, st.rx[R_JITTER]), *transit_obj = SLOT(rx, st.rx[R_TRANSIT]);
    long long last_transit = 0;
    if (jitter_obj == NULL || !PyFloat_CheckExact(jitter_obj) || transit_obj == NULL)
        return 0;
    int has_transit = transit_obj != Py_None;
    if (has_transit && slot_ll(rx, st.rx[R_TRANSIT], &last_transit) < 0)
        return 0;
    if (!is_false(SLOT(leg, st.leg[L_SILENT])))
        return 0;
    PyObject *codec = SLOT(leg, st.leg[L_CODEC]);
    if (codec == NULL || !PyUnicode_CheckExact(codec))
        return 0;

    /* The relay to the peer, if it would happen: its checks too. */
    PyObject *peer = SLOT(leg, st.leg[L_PEER]);
    PyObject *pc = NULL, *sender = NULL;
    const unsigned char *table = NULL;
    int relay = 0;
    long long s_ts_offset = 0, s_last_ts = 0, s_seq_offset = 0, s_max_seq = 0, s_pt = 0, s_ssrc = 0, peer_fd = -1;
    if (peer == NULL)
        return 0;
    if (peer != Py_None) {
        if (!PyObject_TypeCheck(peer, st.leg_cls))
            return 0;
        PyObject *sends = SLOT(peer, st.leg[L_SENDS]), *player = SLOT(peer, st.leg[L_PLAYER]);
        if (sends == NULL || player == NULL || (!is_true(sends) && !is_false(sends)))
            return 0;
        relay = is_true(sends) && player == Py_None;
    }
    if (relay) {
        PyObject *peer_codec = SLOT(peer, st.leg[L_CODEC]);
        if (peer_codec == NULL || !PyUnicode_CheckExact(peer_codec))
            return 0;
        int same = PyUnicode_Compare(codec, peer_codec);
        if (same == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        if (same != 0) {
            if (PyUnicode_Compare(codec, st.pcmu) == 0)
                table = st.u2a;
            else if (PyUnicode_Compare(codec, st.pcma) == 0)
                table = st.a2u;
            else {
                PyErr_Clear();
                return 0;
            }
        }
        if (!is_false(SLOT(peer, st.leg[L_CLOSED])))
            return 0;  /* a closed peer's socket number may belong to another socket by now */
        PyObject *peer_remote = SLOT(peer, st.leg[L_REMOTE]);
        if (peer_remote == NULL || cached_addr(&self->peer_key, &self->peer_sa, peer_remote) < 0)
            return 0;
        pc = SLOT(peer, st.leg[L_STATS]);
        sender = SLOT(peer, st.leg[L_SENDER]);
        if (pc == NULL || !PyObject_TypeCheck(pc, st.stats_cls) || sender == NULL
            || !PyObject_TypeCheck(sender, st.sender_cls))
            return 0;
        if (slot_ll(peer, st.leg[L_RTP_FD], &peer_fd) < 0 || peer_fd < 0)
            return 0;
        /* RtpSender.relay's fast branch: the same source, moving forward by at most RESYNC_SAMPLES. */
        long long source_ssrc;
        if (!is_true(SLOT(sender, st.sender[S_RELAYING]))
            || slot_ll(sender, st.sender[S_SOURCE_SSRC], &source_ssrc) < 0 || (unsigned long long)source_ssrc != ssrc
            || slot_ll(sender, st.sender[S_TS_OFFSET], &s_ts_offset) < 0
            || slot_ll(sender, st.sender[S_LAST_TS], &s_last_ts) < 0
            || slot_ll(sender, st.sender[S_SEQ_OFFSET], &s_seq_offset) < 0
            || slot_ll(sender, st.sender[S_MAX_SEQ], &s_max_seq) < 0
            || slot_ll(sender, st.sender[S_PAYLOAD_TYPE], &s_pt) < 0 || s_pt < 0 || s_pt > 127
            || slot_ll(sender, st.sender[S_SSRC], &s_ssrc) < 0 || s_ssrc < 0 || s_ssrc > 0xFFFFFFFFLL)
            return 0;
        /* Python masks with & on arbitrary-precision ints; two's complement & gives the same here. */
        unsigned long long out_ts = (unsigned long long)(ts + (unsigned long long)s_ts_offset) & 0xFFFFFFFFULL;
        unsigned long long step = (out_ts - (unsigned long long)s_last_ts) & 0xFFFFFFFFULL;
        if ((long long)step > st.resync_samples)
            return 0;
        long long dummy;
        if (slot_ll(sender, st.sender[S_PACKETS], &dummy) < 0 || slot_ll(sender, st.sender[S_OCTETS], &dummy) < 0)
            return 0;
    }
    PyObject *recorder = SLOT(leg, st.leg[L_RECORDER]);
    PyObject *record_side = SLOT(leg, st.leg[L_RECORD_SIDE]);
    if (recorder == NULL || record_side == NULL)
        return 0;
    for (int i = 0; i < C_COUNT; i++) {
        long long dummy;
        if (slot_ll(counters, st.counter[i], &dummy) < 0 || (pc != NULL && slot_ll(pc, st.counter[i], &dummy) < 0))
            return 0;
    }
    PyObject *rec_sides = NULL, *rec_side = NULL;
    if (recorder != Py_None && recorder_side(recorder, record_side, codec, &rec_sides, &rec_side) == 0)
        return 0;

    /* -- from here on, exactly what the Python code does, in its order -- */
    slot_set_obj(leg, st.leg[L_LAST_RX_AT], now_obj);
    if (slot_add(counters, st.counter[C_PACKETS_IN], 1) < 0 || slot_add(counters, st.counter[C_OCTETS_IN], n) < 0)
        goto fail;
    /* ReceiveStats.update, fast branch */
    if (seq == 0)
        cycles += 1 << 16;
    if (slot_set_ll(rx, st.rx[R_CYCLES], cycles) < 0 || slot_set_ll(rx, st.rx[R_MAX_SEQ], (long long)seq) < 0
        || slot_set_ll(rx, st.rx[R_NEXT_SEQ], (long long)((seq + 1) & 0xFFFF)) < 0
        || slot_set_ll(rx, st.rx[R_RECEIVED], received + 1) < 0)
        goto fail;
    {
        double arrival = now * (double)clock_rate + 0.5;
        /* int() truncates toward zero; the clock is positive, so does the cast */
        long long transit = ((long long)arrival - (long long)ts) & 0xFFFFFFFFLL;
        if (has_transit) {
            long long d = (transit - last_transit) & 0xFFFFFFFFLL;
            if (d >= 0x80000000LL)
                d = (1LL << 32) - d;
            double jitter = PyFloat_AS_DOUBLE(jitter_obj);
            PyObject *j = PyFloat_FromDouble(jitter + ((double)d - jitter) * 0.0625);
            if (j == NULL)
                goto fail;
            slot_set(rx, st.rx[R_JITTER], j);
        }
        if (slot_set_ll(rx, st.rx[R_TRANSIT], transit) < 0)
            goto fail;
    }
    slot_set_obj(leg, st.leg[L_LAST_AUDIO_AT], now_obj);
    const unsigned char *payload = buf + 12;
    Py_ssize_t plen = n - 12;
    if (peer != Py_None && relay) {
        unsigned char out[12 + 2048];
        unsigned long long out_ts = (unsigned long long)(ts + (unsigned long long)s_ts_offset) & 0xFFFFFFFFULL;
        unsigned long long step = (out_ts - (unsigned long long)s_last_ts) & 0xFFFFFFFFULL;
        unsigned long out_seq = (unsigned long)((seq + (unsigned long long)s_seq_offset) & 0xFFFF);
        if (((out_seq - (unsigned long long)s_max_seq) & 0xFFFF) < 0x8000) {
            if (slot_set_ll(sender, st.sender[S_MAX_SEQ], (long long)out_seq) < 0
                || slot_set_ll(sender, st.sender[S_NEXT_SEQ], (long long)((out_seq + 1) & 0xFFFF)) < 0)
                goto fail;
        }
        if (step < 0x80000000ULL) {
            if (slot_set_ll(sender, st.sender[S_LAST_TS], (long long)out_ts) < 0
                || slot_set_ll(sender, st.sender[S_LAST_SAMPLES], plen) < 0)
                goto fail;
            slot_set_obj(sender, st.sender[S_LAST_NOW], now_obj);
        }
        if (slot_add(sender, st.sender[S_PACKETS], 1) < 0 || slot_add(sender, st.sender[S_OCTETS], plen) < 0)
            goto fail;
        out[0] = 0x80;
        out[1] = (unsigned char)((marker ? 0x80 : 0) | (unsigned int)s_pt);
        out[2] = (unsigned char)(out_seq >> 8);
        out[3] = (unsigned char)out_seq;
        out[4] = (unsigned char)(out_ts >> 24);
        out[5] = (unsigned char)(out_ts >> 16);
        out[6] = (unsigned char)(out_ts >> 8);
        out[7] = (unsigned char)out_ts;
        out[8] = (unsigned char)(s_ssrc >> 24);
        out[9] = (unsigned char)(s_ssrc >> 16);
        out[10] = (unsigned char)(s_ssrc >> 8);
        out[11] = (unsigned char)s_ssrc;
        if (table != NULL) {
            for (Py_ssize_t i = 0; i < plen; i++)
                out[12 + i] = table[payload[i]];
        } else {
            memcpy(out + 12, payload, (size_t)plen);
        }
        ssize_t sent = sendto((int)peer_fd, out, (size_t)(12 + plen), 0, (const struct sockaddr *)&self->peer_sa,
                              sizeof self->peer_sa);
        if (sent < 0) {
            int err = errno;
            if (slot_add(pc, st.counter[C_SEND_ERRORS], 1) < 0)
                goto fail;
            if (err != EAGAIN && err != EWOULDBLOCK && err != EINTR) {
                PyObject *name = SLOT(peer, st.leg[L_NAME]);
                PyObject *r = PyObject_CallMethod(st.logger, "debug", "sOOs", "leg %s: send to %s failed: %s",
                                                  name ? name : Py_None, self->peer_key, strerror(err));
                if (r == NULL)
                    PyErr_Clear();
                Py_XDECREF(r);
            }
        } else {
            if (slot_add(pc, st.counter[C_PACKETS_OUT], 1) < 0
                || slot_add(pc, st.counter[C_OCTETS_OUT], 12 + plen) < 0)
                goto fail;
        }
        slot_set_obj(peer, st.leg[L_LAST_RELAY_OUT], now_obj);
        if (slot_add(pc, st.counter[C_RELAYED_OUT], 1) < 0)
            goto fail;
    }
    if (rec_side != NULL) {
        /* recorder.push: side.fifo += payload; side.pushed = True */
        PyObject *fifo = SLOT(rec_side, side_off[A_FIFO]);
        Py_ssize_t have = PyByteArray_GET_SIZE(fifo);
        if (PyByteArray_Resize(fifo, have + plen) < 0)
            goto fail;
        memcpy(PyByteArray_AS_STRING(fifo) + have, payload, (size_t)plen);
        slot_set_obj(rec_side, side_off[A_PUSHED], Py_True);
    }
    Py_XDECREF(rec_sides);
    return 1;
fail:
    Py_XDECREF(rec_sides);
    return -1;
}

static PyObject *Reader_call(Reader *self, PyObject *args, PyObject *kwargs)
{
    unsigned char buf[2048];
    struct sockaddr_storage ss;
    socklen_t slen = sizeof ss;
    /* Non-blocking, so the GIL stays held: releasing it per packet would let another thread take it and
     * keep it for a whole switch interval while packets wait. */
    ssize_t n = recvfrom(self->fd, buf, sizeof buf, 0, (struct sockaddr *)&ss, &slen);
    if (n < 0) {
        int err = errno;
        if (err != EAGAIN && err != EWOULDBLOCK && err != EINTR && st.logger != NULL) {
            /* e.g. ECONNREFUSED from an ICMP error: nothing to read */
            PyObject *r = PyObject_CallMethod(st.logger, "debug", "ss", "RTP socket error: %s", strerror(err));
            if (r == NULL)
                PyErr_Clear();
            Py_XDECREF(r);
        }
        Py_RETURN_NONE;
    }
    PyObject *now_obj = PyObject_CallNoArgs(self->clock);
    if (now_obj == NULL)
        return NULL;
    double now = PyFloat_AsDouble(now_obj);
    if (now == -1.0 && PyErr_Occurred()) {
        Py_DECREF(now_obj);
        return NULL;
    }
    if (st.bound && ss.ss_family == AF_INET && self->leg != Py_None) {
        int done = fast_path(self, buf, n, (struct sockaddr_in *)&ss, now_obj, now);
        if (done != 0) {
            Py_DECREF(now_obj);
            if (done < 0)
                return NULL;
            self->fast++;
            Py_RETURN_NONE;
        }
    }
    self->slow++;
    PyObject *addr = NULL;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        char host[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
        addr = Py_BuildValue("(si)", host, (int)ntohs(sin->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        char host[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
        addr = Py_BuildValue("(siII)", host, (int)ntohs(sin6->sin6_port), (unsigned int)ntohl(sin6->sin6_flowinfo),
                             (unsigned int)sin6->sin6_scope_id);
    } else {
        addr = Py_BuildValue("()");
    }
    PyObject *data = PyBytes_FromStringAndSize((const char *)buf, n);
    if (addr == NULL || data == NULL) {
        Py_XDECREF(addr);
        Py_XDECREF(data);
        Py_DECREF(now_obj);
        return NULL;
    }
    PyObject *r = PyObject_CallFunctionObjArgs(self->handler, data, addr, now_obj, NULL);
    Py_DECREF(data);
    Py_DECREF(addr);
    Py_DECREF(now_obj);
    return r;
}

static int Reader_init(Reader *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"fd", "handler", "clock", "leg", NULL};
    int fd;
    PyObject *handler, *clock, *leg = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iOO|O", kwlist, &fd, &handler, &clock, &leg))
        return -1;
    self->fd = fd;
    Py_INCREF(handler);
    Py_XSETREF(self->handler, handler);
    Py_INCREF(clock);
    Py_XSETREF(self->clock, clock);
    Py_INCREF(leg);
    Py_XSETREF(self->leg, leg);
    return 0;
}

static PyObject *Reader_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    Reader *self = (Reader *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->fd = -1;
    Py_INCREF(Py_None);
    self->handler = Py_None;
    Py_INCREF(Py_None);
    self->clock = Py_None;
    Py_INCREF(Py_None);
    self->leg = Py_None;
    return (PyObject *)self;
}

static int Reader_traverse(Reader *self, visitproc visit, void *arg)
{
    Py_VISIT(self->handler);
    Py_VISIT(self->clock);
    Py_VISIT(self->leg);
    Py_VISIT(self->remote_key);
    Py_VISIT(self->peer_key);
    return 0;
}

static int Reader_clear(Reader *self)
{
    Py_CLEAR(self->handler);
    Py_CLEAR(self->clock);
    Py_CLEAR(self->leg);
    Py_CLEAR(self->remote_key);
    Py_CLEAR(self->peer_key);
    return 0;
}

static void Reader_dealloc(Reader *self)
{
    PyObject_GC_UnTrack(self);
    Reader_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* handler and leg are set together by the engine (a pooled socket changes hands); both must be set. */
static int set_object(PyObject **slot, PyObject *value, const char *name)
{
    if (value == NULL) {
        PyErr_Format(PyExc_AttributeError, "cannot delete %s", name);
        return -1;
    }
    Py_INCREF(value);
    Py_XSETREF(*slot, value);
    return 0;
}

static PyObject *Reader_get_handler(Reader *self, void *c) { Py_INCREF(self->handler); return self->handler; }
static int Reader_set_handler(Reader *self, PyObject *v, void *c) { return set_object(&self->handler, v, "handler"); }
static PyObject *Reader_get_leg(Reader *self, void *c) { Py_INCREF(self->leg); return self->leg; }
static int Reader_set_leg(Reader *self, PyObject *v, void *c) { return set_object(&self->leg, v, "leg"); }
static PyObject *Reader_get_clock(Reader *self, void *c) { Py_INCREF(self->clock); return self->clock; }

static PyGetSetDef Reader_getset[] = {
    {"handler", (getter)Reader_get_handler, (setter)Reader_set_handler, "handler(data, addr, now): the Python path", NULL},
    {"leg", (getter)Reader_get_leg, (setter)Reader_set_leg, "leg relayed in C (None: every packet to handler)", NULL},
    {"clock", (getter)Reader_get_clock, NULL, "clock() -> seconds", NULL},
    {NULL}
};

static PyMemberDef Reader_members[] = {
    {"fd", T_INT, offsetof(Reader, fd), READONLY, "socket file descriptor"},
    {"fast", T_ULONGLONG, offsetof(Reader, fast), READONLY, "packets relayed in C"},
    {"slow", T_ULONGLONG, offsetof(Reader, slow), READONLY, "packets handed to the handler"},
    {NULL}
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gateway.media._fastrtp.Reader",
    .tp_doc = PyDoc_STR("Reader(fd, handler, clock, leg=None): read one datagram per call; relay the steady "
                        "state of `leg` in C, hand everything else to handler(data, addr, now)."),
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = Reader_new,
    .tp_init = (initproc)Reader_init,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_traverse = (traverseproc)Reader_traverse,
    .tp_clear = (inquiry)Reader_clear,
    .tp_call = (ternaryfunc)Reader_call,
    .tp_getset = Reader_getset,
    .tp_members = Reader_members,
};

/* ---------------------------------------------------------------------------------------------- */
/* a recording's file: created and sealed in one system-call run each, the GIL released once         */
/* Each system call the disk writer's thread makes in Python releases the GIL and takes it back, and  */
/* the event loop's thread pays for each hand-over; a recording used to cost a dozen of them.          */

/* write_all() for one buffer. */
static int write_whole(int fd, const char *data, Py_ssize_t size)
{
    struct iovec one = {(void *)data, (size_t)size};
    return size > 0 ? write_all(fd, &one, 1) : 0;
}

/* A path given as bytes holds no NUL (the system call would see a shorter one); else ValueError, -1. */
static int path_ok(const char *fn, const char *path, Py_ssize_t len)
{
    if ((Py_ssize_t)strlen(path) == len)
        return 0;
    PyErr_Format(PyExc_ValueError, "%s(): embedded null byte in path", fn);
    return -1;
}

PyDoc_STRVAR(create_file_doc,
"create_file(path, data, mode, keep_open) -> int | None\n\n"
"Create (or truncate) the file at `path` (bytes) with permission bits `mode` and write `data` whole.  With\n"
"`keep_open` the file is opened read-write and its descriptor returned; else it is closed (not fsync'd) and\n"
"None returned.  OSError (the file closed) when a step fails.  One release of the GIL.");

static PyObject *fastrtp_create_file(PyObject *module, PyObject *args)
{
    const char *path, *data;
    Py_ssize_t path_len, size;
    int mode, keep_open, fd, err = 0;
    if (!PyArg_ParseTuple(args, "y#y#ip", &path, &path_len, &data, &size, &mode, &keep_open)
            || path_ok("create_file", path, path_len) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    fd = open(path, (keep_open ? O_RDWR : O_WRONLY) | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        err = errno;
    } else if ((err = write_whole(fd, data, size)) != 0) {
        close(fd);
    } else if (!keep_open && close(fd) != 0) {
        err = errno;
    }
    Py_END_ALLOW_THREADS
    if (err) {
        errno = err;
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
    }
    if (keep_open)
        return PyLong_FromLong(fd);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(seal_read_doc,
"seal_read(fd, patch, max_size) -> bytes | None\n\n"
"Write `patch` (8 bytes: RIFF size, data size, little-endian) at offsets 4 and 40 of the file open as `fd`,\n"
"then read the whole file back and close `fd`: its bytes, for the hash.  None (`fd` left open, the patch\n"
"written) when the file is larger than `max_size` bytes.  OSError (`fd` left open) when a step before the\n"
"close fails.\n"
"One release of the GIL.");

static PyObject *fastrtp_seal_read(PyObject *module, PyObject *args)
{
    int fd, err = 0, too_big = 0;
    const char *patch;
    Py_ssize_t patch_len, max_size;
    if (!PyArg_ParseTuple(args, "iy#n", &fd, &patch, &patch_len, &max_size))
        return NULL;
    if (patch_len != 8) {
        PyErr_SetString(PyExc_ValueError, "seal_read(): patch is 8 bytes");
        return NULL;
    }
    struct stat st;
    char *buf = NULL;
    Py_ssize_t got = 0;
    Py_BEGIN_ALLOW_THREADS
    errno = 0;
    if (pwrite(fd, patch, 4, 4) != 4 || pwrite(fd, patch + 4, 4, 40) != 4) {
        err = errno ? errno : EIO;
    } else if (fstat(fd, &st) != 0) {
        err = errno;
    } else if ((Py_ssize_t)st.st_size > max_size || st.st_size < 0) {
        too_big = 1;
    } else if ((buf = malloc(st.st_size > 0 ? (size_t)st.st_size : 1)) == NULL) {
        err = ENOMEM;
    } else {
        while (got < (Py_ssize_t)st.st_size) {  /* a file that shrank meanwhile is read as it now is */
            ssize_t n = pread(fd, buf + got, (size_t)(st.st_size - got), got);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                err = errno;
                break;
            }
            if (n == 0)
                break;
            got += n;
        }
        /* A failing close(2) still closes it on Linux (the caller must not close it again); a write error it
         * reports is reported again by the syncfs(2) that makes the sealed batch durable. */
        if (err == 0)
            close(fd);
    }
    Py_END_ALLOW_THREADS
    if (too_big)
        Py_RETURN_NONE;
    if (err) {
        free(buf);
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *out = PyBytes_FromStringAndSize(buf, got);
    free(buf);
    return out;
}

PyDoc_STRVAR(append_durably_doc,
"append_durably(path, data) -> None\n\n"
"Append `data` whole to the file at `path` (bytes; created if missing) and fsync it.  When the write or the\n"
"fsync fails, the file is cut back to where it ended (no torn line left for the next append to be glued onto)\n"
"and OSError is raised.  One release of the GIL (the journal's group commit).");

static PyObject *fastrtp_append_durably(PyObject *module, PyObject *args)
{
    const char *path, *data;
    Py_ssize_t path_len, size;
    int err = 0;
    if (!PyArg_ParseTuple(args, "y#y#", &path, &path_len, &data, &size) || path_ok("append_durably", path, path_len) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) {
        err = errno;
    } else {
        struct stat st;
        if (fstat(fd, &st) != 0) {
            err = errno;
        } else if ((err = write_whole(fd, data, size)) != 0 || (fsync(fd) != 0 && (err = errno) != 0)) {
            if (ftruncate(fd, st.st_size) != 0) {
                /* the cut failed too: the error already reported stands */
            }
        }
        close(fd);
    }
    Py_END_ALLOW_THREADS
    if (err) {
        errno = err;
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(drain_doc, "drain(fd, limit) -> int: read and drop up to `limit` queued datagrams of a non-blocking "
             "socket; how many were dropped. Holds the GIL (no system call here can block), so the event loop's "
             "thread does not hand the GIL to another thread and wait to get it back.");

static PyObject *fastrtp_drain(PyObject *module, PyObject *args)
{
    int fd, limit;
    if (!PyArg_ParseTuple(args, "ii", &fd, &limit))
        return NULL;
    unsigned char buf[2048];
    long dropped = 0;
    while (dropped < limit) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break; /* EAGAIN: empty; any other error (EBADF...) ends it too, as in the Python path */
        }
        dropped++;
    }
    return PyLong_FromLong(dropped);
}

static PyMethodDef module_methods[] = {
    {"drain", fastrtp_drain, METH_VARARGS, drain_doc},
    {"bind", fastrtp_bind, METH_VARARGS, bind_doc},
    {"bind_aligner", fastrtp_bind_aligner, METH_O, bind_aligner_doc},
    {"write_batch", fastrtp_write_batch, METH_O, write_batch_doc},
    {"create_file", fastrtp_create_file, METH_VARARGS, create_file_doc},
    {"seal_read", fastrtp_seal_read, METH_VARARGS, seal_read_doc},
    {"append_durably", fastrtp_append_durably, METH_VARARGS, append_durably_doc},
    {"tick_recorders", (PyCFunction)(void (*)(void))fastrtp_tick_recorders, METH_FASTCALL, tick_recorders_doc},
    {"tick_legs", (PyCFunction)(void (*)(void))fastrtp_tick_legs, METH_FASTCALL, tick_legs_doc},
    {"g711_frame", (PyCFunction)(void (*)(void))fastrtp_g711_frame, METH_FASTCALL, g711_frame_doc},
    {NULL}
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "gateway.media._fastrtp",
    "C fast path for the RTP relay (optional; gateway/media/session.py falls back to Python).", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__fastrtp(void)
{
    if (PyType_Ready(&ReaderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    Py_INCREF(&ReaderType);
    if (PyModule_AddObject(m, "Reader", (PyObject *)&ReaderType) < 0) {
        Py_DECREF(&ReaderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
