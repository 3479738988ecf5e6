/*
 * native/hotloop.c -- the first reader's request loop in C (issue 15, cloop).
 * #included by native/hotpath.c after the engine's methods' helpers (serve_raw,
 * writev_all, count_request, ctx_take/ctx_give).
 *
 * Engine.serve(fd, buf, last, spin_ns, pending, requests) reads /dev/fuse
 * (non-blocking fd) into buf and answers every request the engine takes, without
 * going back to Python: the read and the spin run with the GIL released, the GIL
 * is taken only to run the engine on a request whose opcode it may take (the
 * same serve_raw Engine.handle runs, with ordered = 1), to write its reply and
 * count it in `requests` (Session.stats.requests).  It returns, with the GIL held:
 *
 *   (n, last)       n > 0: a request of n bytes is in buf, untouched: one the
 *                   engine does not take (any other opcode, more than
 *                   BIG_REQUEST bytes, shorter than a header) or one it declined (nothing changed): Python
 *                   handles it as if it had read it itself;
 *   (0, last)       nothing to read right now and the loop has something to do:
 *                   spin_ns passed since `last` (the end of the last request), or
 *                   `pending` (fs.evict_later) is not empty and its head is not
 *                   one Engine.reap evicts here (hotmeta.c reap_one), or CLOOP_BATCH
 *                   requests were served (Python looks at _done and the rest);
 *   (-1, last)      ENODEV: unmounted;
 *   (-2, last, exc) the engine failed after it began changing state (exc): the
 *                   request is in buf; Python logs it and answers EIO, as
 *                   Session._native_answer does for Engine.handle.
 *
 *   (n, last, True) n > 0: as (n, last), but the window engine was offered it
 *                   and declined it (nothing changed): Python does not offer it
 *                   to the engine again (its counters count each decline once);
 *   (-2, last, exc, what) as above for the window engine (what: which path);
 *   (-3, last, err) a window READ/WRITE was answered and counted, but its reply
 *                   could not be written (errno err): Python's _write_failed.
 *
 * serve(..., win, win_io, stats), with `win` a mount.server._winfast.Engine (or
 * None): every FUSE_IOCTL, and with win_io every READ/WRITE, is first handed to
 * the window engine's C entry points (native/winfast_api.h) as Session._native /
 * _native_io hand them to it, its notifications counted in stats.notifications;
 * a hot-path request is left to Python while the engine has batches queued (the
 * rule of Session._hot).  docs/decisions.md, "Window IOCTLs, READs and WRITEs in
 * the C loop".
 *
 * `last` is the CLOCK_MONOTONIC (time.perf_counter_ns) time at which the last
 * request served here was done, or the caller's own `last` if none was.  Any
 * other read error is raised as OSError (as Session._read_request raises it).
 * The conditions under which the session may call this at all (and why the
 * result is the same as its Python loop's) are in docs/decisions.md, "The first
 * reader's loop in C".
 */

#define CLOOP_BATCH 65536        /* requests served before Python looks at its state */
#define CLOOP_BIG (64 * 1024)    /* mount.server.fairness.BIG_REQUEST */
/* The GIL kept across requests that follow one another (issue 15, appends2): after a
 * request is answered the next read(2) -- non-blocking, it never sleeps -- is made
 * with the GIL still held, and the GIL is released only when that read finds nothing
 * (the spin, the reap, Python's idle path: as before) or when it has been held for
 * CLOOP_HOLD_NS since it was last taken: then the next read is made without it, as
 * every read was before, which gives a thread that waits for it (the populate-ahead
 * thread, the notifier, trio's) its turn -- at least as often as the interpreter's
 * own switch interval (5 ms) would.  Why: every release of a GIL some thread waits
 * for wakes that thread (a futex wake, an IPI to the other vCPU), which mostly loses
 * the race for it and sleeps again; during fresh 4 KiB appends the populate-ahead
 * thread was woken ~12,000 times per 40,000 WRITEs and the loop itself slept ~10,000
 * times waiting for the GIL back (docs/performance.md, change 33).  cloop_hold_ns 0
 * (SHMFS_CLOOP_HOLD=0 in the environment when _hotpath is imported): the GIL released
 * around every read, as before (A/B). */
#define CLOOP_HOLD_NS 1000000LL
static long long cloop_hold_ns = CLOOP_HOLD_NS;
/* appends3: after a small WRITE served from the WRITE cache (the cache still valid),
 * a read that finds nothing keeps the GIL -- and with it the cache and the WRITE
 * counts waiting in C -- for up to WC_SPIN_NS since that WRITE's end before the GIL
 * goes as above: in a writer's ping-pong (dd bs=4k) the next WRITE arrives a few
 * microseconds after the reply, and each release emptied the cache and folded the
 * counts.  Bounded by CLOOP_HOLD_NS and by spin_ns as every hold is.
 * SHMFS_WC_SPIN=N (µs, read at import; 0 off) changes it. */
#define WC_SPIN_NS 20000LL
static long long wc_spin_ns = WC_SPIN_NS;

static inline long long mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

#define OP_FSYNC 20 /* handed to the window engine (native/winfsync.c) */

/* an opcode serve_raw may take with ordered = 1 (the rest is declined unread) */
static int cloop_opcode(uint32_t op)
{
    switch (op) {
    case OP_READ:
    case OP_WRITE:
    case OP_GETATTR:
    case OP_LOOKUP:
    case OP_RELEASE:
    case OP_OPEN:
    case OP_CREATE:
    case OP_UNLINK:
    case OP_MKDIR:
    case OP_RMDIR:
    case OP_FORGET:
    case OP_BATCH_FORGET:
        return 1;
    default:
        return 0;
    }
}

static const winfast_api_t *winfast_api; /* imported at the first serve given an engine */
static PyObject *s_notifications;

/*
 * A window request (FUSE_IOCTL, or READ/WRITE) handed to the window engine `win`,
 * GIL held, as Session._native / _native_io do: 1 answered (counted in requests,
 * an IOCTL's notifications in stats.notifications), 0 declined (nothing changed),
 * -1 the engine failed (exception set), -3 answered but its reply not written
 * (*werr: the errno).
 */
static int cloop_window(PyObject *win, int fd, unsigned char *buf, ssize_t r, uint32_t op,
                        PyObject *requests, PyObject *stats, long long t0, int *werr)
{
    PyObject *mv = PyMemoryView_FromMemory((char *)buf, r, PyBUF_READ);
    if (!mv)
        return -1;
    PyObject *res;
    if (op != OP_READ && op != OP_WRITE) { /* an IOCTL or an FSYNC: Engine.remap */
        res = winfast_api->ioctl(win, mv);
    } else {
        PyObject *a = Py_BuildValue("(Oi)", mv, fd);
        res = a ? (op == OP_WRITE ? winfast_api->write : winfast_api->read)(win, a) : NULL;
        Py_XDECREF(a);
    }
    Py_DECREF(mv);
    if (!res)
        return -1;
    if (res == Py_None) {
        Py_DECREF(res);
        return 0;
    }
    long n = PyLong_AsLong(res);
    Py_DECREF(res);
    if (n == -1 && PyErr_Occurred()) { /* answered: not the engine's failure */
        PyErr_Clear();
        n = 0;
    }
    int rc = 1;
    if (op != OP_READ && op != OP_WRITE) { /* Session._native: notifications += n */
        if (n > 0) {
            PyObject *v = PyObject_GetAttr(stats, s_notifications), *w = NULL;
            if (v) {
                PyObject *k = PyLong_FromLong(n);
                w = k ? PyNumber_Add(v, k) : NULL;
                Py_XDECREF(k);
                Py_DECREF(v);
            }
            if (!w || PyObject_SetAttr(stats, s_notifications, w) < 0)
                PyErr_Clear();
            Py_XDECREF(w);
        }
    } else if (n) { /* Session._native_answer: the reply's errno, _write_failed's */
        *werr = (int)n;
        rc = -3;
    }
    if (count_request(requests, (int)op, t0) < 0)
        PyErr_Clear();
    return rc;
}

static PyObject *enotty_key; /* the int ENOTTY: Operations._errors' key */

/* The pending exception, normalised and with its traceback attached, taken from the
 * thread state (a new reference; None if there was none): what a serve loop returns
 * to Python for it to log and answer. */
static PyObject *take_exception(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value && tb)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value ? value : Py_NewRef(Py_None);
}

/*
 * Operations._ioctl's "not a tty", for an IOCTL the window engine declined: a message
 * parse_request accepts (its length, no extensions, fuse_ioctl_in and in_size bytes
 * of data) whose command is neither shmfs's (type 'S': ioctl.serve's) nor chattr's
 * (types 'f' and 'X': fileattr.serve's, whatever the number) -- ioctl.serve raises
 * ENOTTY, Operations._failed counts it in ops._errors and answers -ENOTTY, with no
 * notification (its reply waits for none: the caller checked the engine's queue).
 * 1 answered (*werr: the reply write's errno, or 0), 0 Python's.  GIL held.
 */
static int cloop_enotty(Engine *e, int fd, const unsigned char *buf, ssize_t r, int *werr)
{
    if (!e->errors_counter || r < IN_HEADER + IOCTL_IN_ || get_u32(buf) != (uint32_t)r ||
        get_u32(buf + 36) != 0)
        return 0;
    uint32_t cmd = get_u32(buf + IN_HEADER + 12), in_size = get_u32(buf + IN_HEADER + 24);
    unsigned type = (cmd >> 8) & 0xFF;
    if ((uint64_t)in_size > (uint64_t)(r - IN_HEADER - IOCTL_IN_) || type == 'S' ||
        type == 'f' || type == 'X')
        return 0;
    if (!enotty_key && !(enotty_key = PyLong_FromLong(ENOTTY)))
        goto fail;
    if (incr_item(e->errors_counter, enotty_key) < 0) /* nothing changed if it failed */
        goto fail;
    unsigned char out[OUT_HEADER];
    put_u32(out, OUT_HEADER);
    put_u32(out + 4, (uint32_t)-ENOTTY);
    put_u64(out + 8, get_u64(buf + 8));
    ssize_t w;
    do {
        w = write(fd, out, OUT_HEADER);
    } while (w < 0 && errno == EINTR);
    *werr = w < 0 ? errno : 0;
    e->cl_enotty++;
    return 1;
fail:
    PyErr_Clear();
    return 0;
}

static PyObject *Engine_serve(Engine *e, PyObject *const *args, Py_ssize_t nargs)
{
    if ((nargs != 6 && nargs != 9) || !PyDict_Check(args[5])) {
        PyErr_SetString(PyExc_TypeError,
                        "serve(fd, buf, last, spin_ns, pending, requests[, win, win_io, stats])");
        return NULL;
    }
    PyObject *win = nargs == 9 && args[6] != Py_None ? args[6] : NULL;
    PyObject *stats = nargs == 9 ? args[8] : NULL;
    int win_io = nargs == 9 && PyObject_IsTrue(args[7]) > 0;
    if (win) {
        if (!winfast_api) {
            if (!s_notifications && !(s_notifications = PyUnicode_InternFromString("notifications")))
                return NULL;
            const winfast_api_t *api = PyCapsule_Import(WINFAST_API_CAPSULE, 0);
            if (!api)
                return NULL;
            if (api->version != WINFAST_API_VERSION) {
                PyErr_SetString(PyExc_ImportError, "hotpath: _winfast API version mismatch");
                return NULL;
            }
            winfast_api = api;
        }
        if (Py_TYPE(win) != winfast_api->type) {
            PyErr_SetString(PyExc_TypeError, "serve: win is not a _winfast.Engine");
            return NULL;
        }
    }
    long fdl = PyLong_AsLong(args[0]);
    long long last = PyLong_AsLongLong(args[2]);
    long long spin_ns = PyLong_AsLongLong(args[3]);
    PyObject *pending = args[4], *requests = args[5];
    if (PyErr_Occurred())
        return NULL;
    if (fdl < 0 || fdl > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "hotpath: bad fd");
        return NULL;
    }
    int fd = (int)fdl;
    int reap = 0;
    if (pending != Py_None) {
        Py_ssize_t k = PyObject_Size(pending);
        if (k < 0)
            return NULL;
        reap = k > 0;
    }
    Py_buffer bb;
    if (PyObject_GetBuffer(args[1], &bb, PyBUF_WRITABLE) < 0)
        return NULL;
    if (bb.len < IN_HEADER) {
        PyBuffer_Release(&bb);
        PyErr_SetString(PyExc_ValueError, "hotpath: buffer too small");
        return NULL;
    }
    unsigned char *buf = bb.buf;
    e->cl_entries++;
    wc_clear(e); /* the WRITE cache lives inside this call only (decisions 39) */
    e->wc_on = 1;
    e->wd_requests = requests; /* wd_flush folds deferred WRITEs' counts into it */
    long long code = 0;
    unsigned long served = 0;
    int err = 0, offered = 0, werr = 0;
    PyObject *exc = NULL;
    const char *what = "regular-file hot path";
    PyThreadState *ts = PyEval_SaveThread();
    int gil = 0;
    long long held = 0; /* when the GIL was last taken (gil: held since then) */
    for (;;) {
        ssize_t r = read(fd, buf, (size_t)bb.len);
        if (r < 0) {
            int en = errno;
            if (en == EAGAIN && gil && wc_spin_ns && e->wc_inode) { /* appends3 */
                long long now = mono_ns();
                if (now - last < wc_spin_ns && now - last < spin_ns && now - held < cloop_hold_ns)
                    continue; /* the GIL and the WRITE cache kept a little longer */
            }
            if (en == EAGAIN && gil) { /* nothing to read: the GIL goes, as before */
                wc_clear(e); /* other threads may run: the next WRITE looks again */
                ts = PyEval_SaveThread();
                gil = 0;
            }
            if (en == EAGAIN) {
                /* Python's loop: reap one eviction on EAGAIN; after spin_ns it sleeps.
                 * An eviction reap_one takes (an unlinked empty file's) is reaped
                 * here, one per empty read as Python would, without leaving. */
                if (reap) {
                    PyEval_RestoreThread(ts);
                    int rr = pending != Py_None ? reap_one(e) : 0;
                    Py_ssize_t k = rr > 0 ? PyObject_Size(pending) : 0;
                    if (rr < 0 || k < 0) { /* only a MemoryError: counted (errors) */
                        PyErr_Clear();
                        e->errors++;
                    }
                    ts = PyEval_SaveThread();
                    if (rr <= 0 || k < 0)
                        break; /* Python's reap (or its skip of a stale entry) */
                    reap = k > 0; /* one per empty read, as Python's loop */
                    continue;
                }
                if (mono_ns() - last >= spin_ns)
                    break;
                continue;
            }
            if (en == EINTR || en == ENOENT) /* interrupted, or aborted before we got it */
                continue;
            if (en == ENODEV)
                code = -1;
            else
                err = en;
            break;
        }
        /* the "declined by the window engine" mark is this request's only: one answered
         * after a decline (a plain file's READ/WRITE) must not leave it on the next
         * request returned to Python, whose _handle would skip _native_io for it */
        offered = 0;
        uint32_t opc = r >= IN_HEADER ? get_u32(buf + 4) : 0;
        /* Session._handle: len(msg) > 40, an IOCTL (_native) or a READ/WRITE (_native_io) */
        int winop = win && r > IN_HEADER &&
                    (opc == OP_IOCTL || opc == OP_FSYNC || /* FSYNC: native/winfsync.c */
                     (win_io && (opc == OP_READ || opc == OP_WRITE)));
        /* a WRITE of the node and handle the WRITE cache holds: that node is no window
         * nor a window's object, and nothing that could make it one ran since (the
         * cache's rule), so the window engine would decline it quietly (winlaunder.c:
         * not in its table's wins, no counter): not offered (decisions 39) */
        if (winop && opc == OP_WRITE && e->wc_inode && r >= IN_HEADER + RW_IN &&
            get_u64(buf + 16) == e->wc_node && get_u64(buf + IN_HEADER) == e->wc_fh)
            winop = 0;
        if (r < IN_HEADER || r > CLOOP_BIG || (!winop && !cloop_opcode(opc))) {
            code = r; /* Python's */
            break;
        }
        long long t0 = mono_ns();
        if (!gil) {
            PyEval_RestoreThread(ts);
            gil = 1;
            held = t0;
        } else {
            e->cl_kept++;
        }
        if (opc != OP_WRITE || winop) /* the WRITE cache holds across C WRITEs only */
            wc_clear(e);
        if (winop) {
            int wr = cloop_window(win, fd, buf, r, opc, requests, stats, t0, &werr);
            if (wr == 0) {
                offered = 1; /* declined: Python goes on from _handle's next step */
            } else if (wr == -1) {
                what = opc == OP_IOCTL ? "window REMAP fast path" : "window READ/WRITE fast path";
                code = -2;
                goto failed;
            } else {
                e->cl_window++;
                if (wr == -3) {
                    e->cl_served++;
                    last = mono_ns();
                    code = -3;
                    break;
                }
                goto done_one;
            }
        }
        if (win && winfast_api->pending(win) > 0) { /* Session._hot: eng.pending(); and
                                                      * a reply other than READ's or
                                                      * WRITE's follows the engine's
                                                      * queued batches (_handle) */
            code = r;
            break;
        }
        if (opc == OP_FSYNC) { /* declined by the engine: Python's, as any other */
            code = r;
            break;
        }
        if (opc == OP_IOCTL) { /* the engine declined it: Operations._ioctl's */
            if (!cloop_enotty(e, fd, buf, r, &werr)) {
                code = r;
                break;
            }
            if (count_request(requests, OP_IOCTL, t0) < 0)
                PyErr_Clear();
            if (werr) {
                e->cl_served++;
                last = mono_ns();
                code = -3;
                break;
            }
            goto done_one;
        }
        ctx_t *c = ctx_take(e);
        if (!c) { /* Python's handle meets the same shortage and answers it */
            code = r;
            break;
        }
        int op = serve_raw(e, buf, r, 1, c);
        if (op > 0) {
            int w = c->total ? writev_all(fd, c->iov, c->niov, c->total, e) : 0;
            if (w && w != ENOENT && w != ENODEV)
                e->write_errors++;
            if (e->wd_hit && e->wc_inode) { /* a deferred WRITE: counted by wd_flush */
                e->wd_hit = 0;
                e->wd_req_n++;
                e->wd_req_ns += (last = mono_ns()) - t0;
            } else if (count_request_at(requests, op, t0, (last = mono_ns())) < 0) {
                PyErr_Clear(); /* the reply is out */
                e->errors++;
            }
        }
        ctx_give(e, c);
        if (op == 0) { /* declined: nothing changed; counted when Python offers it again */
            e->declined--;
            code = r;
            break;
        }
        if (op < 0) {
            code = -2;
        failed:;
            exc = take_exception();
            break;
        }
        goto counted; /* `last`: when count_request_at read the clock */
    done_one:
        last = mono_ns();
    counted:
        e->cl_served++;
        served++;
        if (pending != Py_None) {
            Py_ssize_t k = PyObject_Size(pending);
            if (k < 0) {
                PyErr_Clear();
                k = 1; /* let Python look */
            }
            reap = k > 0;
        }
        if (served >= CLOOP_BATCH)
            break;
        if (last - held >= cloop_hold_ns) { /* the next read without the GIL */
            wc_clear(e);
            ts = PyEval_SaveThread();
            gil = 0;
        }
    }
    if (!gil)
        PyEval_RestoreThread(ts);
    wc_clear(e);
    e->wc_on = 0;
    e->wd_requests = NULL;
    PyBuffer_Release(&bb);
    if (err) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (code > 0)
        e->cl_returned++;
    if (exc)
        return Py_BuildValue("(LLNs)", code, last, exc, what);
    if (code == -3)
        return Py_BuildValue("(LLi)", code, last, werr);
    if (code > 0 && offered)
        return Py_BuildValue("(LLO)", code, last, Py_True);
    return Py_BuildValue("(LL)", code, last);
}

/* Poll fd without the GIL until it is readable or spin_ns have passed: 1 if it
 * became readable.  The caller holds the GIL (released here for the spin). */
static int spin_poll(int fd, long long spin_ns)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int ready = 0;
    Py_BEGIN_ALLOW_THREADS
    long long deadline = mono_ns() + spin_ns;
    do {
        p.revents = 0;
        if (poll(&p, 1, 0) > 0) {
            ready = 1;
            break;
        }
    } while (mono_ns() < deadline);
    Py_END_ALLOW_THREADS
    return ready;
}

/*
 * Engine.spin(fd, spin_ns) -> bool: a reader's look at its fd without sleeping
 * (issue 15, hol: a clone's mount.server.fairness.CLONE_SPIN_NS, and the first
 * reader's spin where Engine.serve does not run), poll(2) with a zero timeout
 * until the fd is readable (True) or spin_ns have passed (False), all with the
 * GIL released.  A spin in Python (select.poll's poll(0) in a loop) takes the
 * GIL back after every turn, and a thread that waits for it (the reader copying
 * a large WRITE in, between its copies) mostly loses the race for it until the
 * spin ends.  Reads nothing: the caller reads (and parks first if it must).
 */
static PyObject *Engine_spin(Engine *e, PyObject *const *args, Py_ssize_t nargs)
{
    (void)e;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "spin(fd, spin_ns)");
        return NULL;
    }
    long fdl = PyLong_AsLong(args[0]);
    long long spin_ns = PyLong_AsLongLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    if (fdl < 0 || fdl > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "hotpath: bad fd");
        return NULL;
    }
    return PyBool_FromLong(spin_poll((int)fdl, spin_ns));
}
