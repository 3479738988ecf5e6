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
 *                   `pending` (fs.evict_later) is not empty, or CLOOP_BATCH
 *                   requests were served (Python looks at _done and the rest);
 *   (-1, last)      ENODEV: unmounted;
 *   (-2, last, exc) the engine failed after it began changing state (exc): the
 *                   request is in buf; Python logs it and answers EIO, as
 *                   Session._native_answer does for Engine.handle.
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

static inline long long mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

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

static PyObject *Engine_serve(Engine *e, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6 || !PyDict_Check(args[5])) {
        PyErr_SetString(PyExc_TypeError, "serve(fd, buf, last, spin_ns, pending, requests)");
        return NULL;
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
    long long code = 0;
    unsigned long served = 0;
    int err = 0;
    PyObject *exc = NULL;
    PyThreadState *ts = PyEval_SaveThread();
    int gil = 0;
    for (;;) {
        ssize_t r = read(fd, buf, (size_t)bb.len);
        if (r < 0) {
            int en = errno;
            if (en == EAGAIN) {
                /* Python's loop: reap one eviction on EAGAIN; after spin_ns it sleeps */
                if (reap || mono_ns() - last >= spin_ns)
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
        if (r < IN_HEADER || r > CLOOP_BIG || !cloop_opcode(get_u32(buf + 4))) {
            code = r; /* Python's */
            break;
        }
        long long t0 = mono_ns();
        PyEval_RestoreThread(ts);
        gil = 1;
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
            if (count_request(requests, op, t0) < 0) { /* the reply is out */
                PyErr_Clear();
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
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyErr_NormalizeException(&type, &value, &tb);
            if (value && tb)
                PyException_SetTraceback(value, tb);
            Py_XDECREF(type);
            Py_XDECREF(tb);
            exc = value ? value : Py_NewRef(Py_None);
            code = -2;
            break;
        }
        e->cl_served++;
        served++;
        last = mono_ns();
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
        ts = PyEval_SaveThread();
        gil = 0;
    }
    if (!gil)
        PyEval_RestoreThread(ts);
    PyBuffer_Release(&bb);
    if (err) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (code > 0)
        e->cl_returned++;
    if (exc)
        return Py_BuildValue("(LLN)", code, last, exc);
    return Py_BuildValue("(LL)", code, last);
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
    struct pollfd p = {.fd = (int)fdl, .events = POLLIN};
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
    return PyBool_FromLong(ready);
}
