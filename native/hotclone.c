/*
 * native/hotclone.c -- a clone reader's loop in C (issue 15, clonec).
 * #included by native/hotpath.c after hotloop.c (it uses serve_raw, writev_all,
 * count_request_at, ctx_take/ctx_give, cloop_opcode, mono_ns and the window engine's
 * C API of hotloop.c).
 *
 * Engine.serve_clone(fd, buf, session, lock, busy, hold, requests, poll_ms, window_ns,
 *                    flags[, spin_ns]) -> (code, last[, extra])
 *
 * What Session._clone_reader does for one request -- poll(2) its clone fd for up to
 * poll_ms, read it, Fairness._note, Fairness._acquire (the fs lock `lock`), engage the
 * CPU latency hold, count it (stats.second_reader), _dispatch -> _handle -> _hot ->
 * Engine.handle on the clone's fd, release the lock, look at the mixed spell -- for the
 * requests the engine takes (cloop_opcode, at most 64 KiB), in C, and again for the
 * next request without going back to Python while the clone is to stay up.  The GIL is
 * released while it polls and reads; it is held from the read's end until the lock is
 * released again.  It returns, with the GIL held:
 *
 *   (0, last)        poll_ms passed with nothing to read (Python's poll timeout);
 *   (-4, last)       Python must look at its state first: after a request it answered,
 *                    the session is done, `busy` is clear, the mixed spell is over
 *                    (flags & CC_STAY), the clone is to spin (flags & CC_SPIN), or
 *                    CLOOP_BATCH requests were answered; or another reader took the
 *                    request poll announced (EAGAIN);
 *   (n, last)        a request of n bytes is in buf, untouched and unlocked: one the
 *                    engine does not take (opcode, size) -- Python's path from _note on;
 *   (n, last, True)  a request of n bytes is in buf, and the fs lock is held for it
 *                    (_note, _acquire, the hold and second_reader done): one the engine
 *                    declined (nothing changed) or may not be offered (NOTIFY_STOREs
 *                    queued, a window batch pending, a window engine C does not know) --
 *                    Python goes on from _dispatch and releases the lock;
 *   (-1, last)       ENODEV: unmounted;
 *   (-2, last, exc)  the engine failed after it began changing state; the lock is
 *                    released; Python logs it and answers EIO on fd.
 *
 * Other read or poll errors are raised as OSError (ECONNABORTED included: the caller
 * treats it as _read_request does).  flags: CC_STAY (fairness.CLONES_STAY), CC_SPIN
 * (a clone spin is configured: Python spins after each request), CC_HOLD (engage the
 * hold if it is not: the clone's `spin = self.spin_ns > 0`), CC_CSPIN (the spin here:
 * after each request answered, while the clone is to stay up, poll(2) the fd with a
 * zero timeout for up to spin_ns with the GIL released before the next poll_ms sleep --
 * mount.server.fairness.CLONE_SPIN_NS, decisions 36's rules: one clone spins at a time
 * (session._spinning), stats.clone_spins / clone_spin_hits counted as Python counts
 * them).  window_ns: MIXED_WINDOW_NS, or -1 for "always mixed".
 *
 * The fs lock, as Fairness._acquire takes it: the uncontended case (no reader waiting,
 * lock.acquire(False) succeeds, and the request is small or no WRITE is being
 * chunked) here; every other case by calling session._acquire(view) itself, whose
 * blocking lock.acquire() waits with the GIL released.  Order of the two locks: a
 * thread never waits for the fs lock while it holds the GIL (the non-blocking try
 * holds it only for the try; the blocking wait is threading.Lock's, which lets the GIL
 * go), so a thread that holds the fs lock and waits for the GIL always gets it
 * (docs/decisions.md, "Clone readers' small requests in C").
 */

#define CC_STAY 1
#define CC_SPIN 2
#define CC_HOLD 4
#define CC_CSPIN 8
#define CC_RECENT_NS 10000000LL /* mount.server.fairness.RECENT_NS */

static PyObject *cc_s_waiting, *cc_s_chunking, *cc_s_done, *cc_s_pending, *cc_s_stores,
    *cc_s_winfast, *cc_s_big_pid, *cc_s_big_ns, *cc_s_last_small, *cc_s_acquire, *cc_s_stats,
    *cc_s_second, *cc_s_engaged, *cc_s_engage, *cc_s_release, *cc_s_is_set, *cc_s_spinning,
    *cc_s_spins, *cc_s_spin_hits;

static int cc_names(void)
{
    if (cc_s_spin_hits)
        return 0;
#define CC_NAME(v, s) if (!(v = PyUnicode_InternFromString(s))) return -1
    CC_NAME(cc_s_waiting, "_waiting");
    CC_NAME(cc_s_chunking, "_chunking");
    CC_NAME(cc_s_done, "_done");
    CC_NAME(cc_s_pending, "_pending");
    CC_NAME(cc_s_stores, "_stores");
    CC_NAME(cc_s_winfast, "_winfast");
    CC_NAME(cc_s_big_pid, "_big_pid");
    CC_NAME(cc_s_big_ns, "_big_ns");
    CC_NAME(cc_s_last_small, "_last_small");
    CC_NAME(cc_s_acquire, "_acquire");
    CC_NAME(cc_s_stats, "stats");
    CC_NAME(cc_s_second, "second_reader");
    CC_NAME(cc_s_engaged, "engaged");
    CC_NAME(cc_s_engage, "engage");
    CC_NAME(cc_s_release, "release");
    CC_NAME(cc_s_is_set, "is_set");
    CC_NAME(cc_s_spinning, "_spinning");
    CC_NAME(cc_s_spins, "clone_spins");
    CC_NAME(cc_s_spin_hits, "clone_spin_hits");
#undef CC_NAME
    return 0;
}

/* mount.server.fairness.SMALL: requests without file data */
static int cc_small_op(uint32_t op)
{
    switch (op) {
    case 1: case 2: case 3: case 5: case 6: case 8: case 9: case 10: case 11: case 12:
    case 13: case 14: case 17: case 18: case 21: case 22: case 23: case 24: case 25:
    case 27: case 28: case 29: case 34: case 35: case 42: case 44: case 45: case 52:
        return 1;
    default:
        return 0;
    }
}

/* fairness._small: SMALL, but not an OPEN or CREATE with O_TRUNC */
static int cc_small(const unsigned char *buf, ssize_t r)
{
    uint32_t op = get_u32(buf + 4);
    if (!cc_small_op(op))
        return 0;
    if ((op == OP_OPEN || op == OP_CREATE) && r >= 44)
        return !(get_u32(buf + 40) & O_TRUNC_);
    return 1;
}

/* session.<name> as a C truth value (-1: error) */
static int cc_true(PyObject *o, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(o, name);
    if (!v)
        return -1;
    int t = PyObject_IsTrue(v);
    Py_DECREF(v);
    return t;
}

static long long cc_ll(PyObject *o, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(o, name);
    if (!v)
        return -1;
    long long x = PyLong_AsLongLong(v);
    Py_DECREF(v);
    return x;
}

/* Fairness._note for a request of at most BIG_REQUEST bytes: a small request of another
 * process than the last large request's, within RECENT_NS of it, marks the traffic
 * mixed (session._last_small = now). */
static int cc_note(PyObject *s, const unsigned char *buf)
{
    uint32_t op = get_u32(buf + 4);
    if (!cc_small_op(op) || op == OP_FORGET || op == OP_BATCH_FORGET)
        return 0;
    long long pid = cc_ll(s, cc_s_big_pid);
    if (pid == -1 && PyErr_Occurred())
        return -1;
    if ((uint32_t)pid == get_u32(buf + 32) && pid >= 0)
        return 0;
    long long big = cc_ll(s, cc_s_big_ns);
    if (big == -1 && PyErr_Occurred())
        return -1;
    long long now = mono_ns();
    if (now - big >= CC_RECENT_NS)
        return 0;
    PyObject *v = PyLong_FromLongLong(now);
    int rc = v ? PyObject_SetAttr(s, cc_s_last_small, v) : -1;
    Py_XDECREF(v);
    return rc;
}

/* Fairness._mixed(): 1 mixed, 0 not, -1 error */
static int cc_mixed(PyObject *s, long long window_ns)
{
    if (window_ns < 0)
        return 1;
    long long t = cc_ll(s, cc_s_last_small);
    if (t == -1 && PyErr_Occurred())
        return -1;
    return mono_ns() - t < window_ns;
}

/* the fs lock for the request in buf, as Fairness._acquire takes it: 0 held, -1 error */
static int cc_acquire(PyObject *s, PyObject *acq, PyObject *rel, unsigned char *buf,
                      ssize_t r, int *slow)
{
    int waiting = cc_true(s, cc_s_waiting);
    if (waiting < 0)
        return -1;
    if (!waiting) {
        PyObject *got = PyObject_CallOneArg(acq, Py_False);
        if (!got)
            return -1;
        int ok = got == Py_True;
        Py_DECREF(got);
        if (ok) {
            if (cc_small(buf, r))
                return 0;
            int chunking = cc_true(s, cc_s_chunking);
            if (chunking == 0)
                return 0;
            PyObject *x = PyObject_CallNoArgs(rel); /* a chunked WRITE let small ones in */
            Py_XDECREF(x);
            if (chunking < 0 || !x)
                return -1;
        }
    }
    *slow = 1;
    PyObject *mv = PyMemoryView_FromMemory((char *)buf, r, PyBUF_WRITE);
    if (!mv)
        return -1;
    PyObject *res = PyObject_CallMethodOneArg(s, cc_s_acquire, mv);
    Py_DECREF(mv);
    if (!res)
        return -1;
    Py_DECREF(res);
    return 0;
}

/* o.<name> += 1 */
static int cc_incr(PyObject *o, PyObject *name)
{
    long long n = cc_ll(o, name);
    if (n == -1 && PyErr_Occurred())
        return -1;
    PyObject *v = PyLong_FromLongLong(n + 1);
    int rc = v ? PyObject_SetAttr(o, name, v) : -1;
    Py_XDECREF(v);
    return rc;
}

/* The clone spin (CC_CSPIN), after a request answered while the clone stays up: if no
 * other clone spins (session._spinning 0), mark this one spinning, poll(2) fd with a
 * zero timeout until it is readable or spin_ns have passed, GIL released, and count it
 * in stats (clone_spins, clone_spin_hits) -- Session._clone_reader's Python spin, in C,
 * without the return to Python around it.  0 done (or skipped), -1 error. */
static int cc_spin(Engine *e, PyObject *s, int fd, long long spin_ns)
{
    long long other = cc_ll(s, cc_s_spinning);
    if (other == -1 && PyErr_Occurred())
        return -1;
    if (other) /* another clone spins: sleep in poll(2) at once */
        return 0;
    PyObject *v = PyLong_FromLong(fd);
    if (!v || PyObject_SetAttr(s, cc_s_spinning, v) < 0) {
        Py_XDECREF(v);
        return -1;
    }
    Py_DECREF(v);
    int ready = spin_poll(fd, spin_ns);
    e->cc_spins++;
    if (ready)
        e->cc_spin_hits++;
    PyObject *zero = PyLong_FromLong(0);
    int rc = !zero || PyObject_SetAttr(s, cc_s_spinning, zero) < 0 ? -1 : 0;
    Py_XDECREF(zero);
    PyObject *st = PyObject_GetAttr(s, cc_s_stats);
    if (!st)
        return -1;
    if (cc_incr(st, cc_s_spins) < 0 || (ready && cc_incr(st, cc_s_spin_hits) < 0))
        rc = -1;
    Py_DECREF(st);
    return rc;
}

/* under the lock, before the engine: the CPU latency hold, stats.second_reader += 1 */
static int cc_account(PyObject *s, PyObject *hold, int flags)
{
    if (flags & CC_HOLD && hold != Py_None) {
        int en = cc_true(hold, cc_s_engaged);
        if (en < 0)
            return -1;
        if (!en) {
            PyObject *x = PyObject_CallMethodNoArgs(hold, cc_s_engage);
            if (!x)
                return -1;
            Py_DECREF(x);
        }
    }
    PyObject *st = PyObject_GetAttr(s, cc_s_stats);
    if (!st)
        return -1;
    long long n = cc_ll(st, cc_s_second);
    PyObject *v = (n == -1 && PyErr_Occurred()) ? NULL : PyLong_FromLongLong(n + 1);
    int rc = v ? PyObject_SetAttr(st, cc_s_second, v) : -1;
    Py_XDECREF(v);
    Py_DECREF(st);
    return rc;
}

/* whether the engine may be offered the request now, as Session._handle / _hot decide:
 * 1 yes (*ordered: no notification queued), 0 Python's, -1 error */
static int cc_offer(PyObject *s, int *ordered)
{
    PyObject *st = PyObject_GetAttr(s, cc_s_stores);
    if (!st)
        return -1;
    Py_ssize_t k = PyObject_Size(st);
    Py_DECREF(st);
    if (k != 0)
        return k < 0 ? -1 : 0; /* NOTIFY_STOREs queued: _handle offers nothing */
    PyObject *w = PyObject_GetAttr(s, cc_s_winfast);
    if (!w)
        return -1;
    int t = PyObject_IsTrue(w);
    int rc = 1;
    if (t > 0) { /* _hot: not while the window engine has batches queued */
        if (!winfast_api) {
            const winfast_api_t *api = PyCapsule_Import(WINFAST_API_CAPSULE, 0);
            if (!api || api->version != WINFAST_API_VERSION)
                PyErr_Clear();
            else
                winfast_api = api;
        }
        if (!winfast_api || Py_TYPE(w) != winfast_api->type)
            rc = 0; /* not the C engine (a test's stand-in): Python asks it */
        else if (winfast_api->pending(w) > 0)
            rc = 0;
    } else if (t < 0) {
        rc = -1;
    }
    Py_DECREF(w);
    if (rc != 1)
        return rc;
    int p = cc_true(s, cc_s_pending);
    if (p < 0)
        return -1;
    *ordered = !p;
    return 1;
}

/* after a request: whether the loop may read the next one without Python (1), or
 * Python must look first (0), -1 error */
static int cc_stay_up(PyObject *s, PyObject *busy_is_set, int flags, long long window_ns)
{
    if (flags & CC_SPIN)
        return 0;
    int d = cc_true(s, cc_s_done);
    if (d != 0)
        return d < 0 ? -1 : 0;
    if (flags & CC_STAY) {
        int m = cc_mixed(s, window_ns);
        if (m <= 0)
            return m;
    }
    PyObject *b = PyObject_CallNoArgs(busy_is_set);
    if (!b)
        return -1;
    int up = b == Py_True;
    Py_DECREF(b);
    return up;
}

static PyObject *Engine_serve_clone(Engine *e, PyObject *const *args, Py_ssize_t nargs)
{
    if ((nargs != 10 && nargs != 11) || !PyDict_Check(args[6])) {
        PyErr_SetString(PyExc_TypeError, "serve_clone(fd, buf, session, lock, busy, hold, "
                                         "requests, poll_ms, window_ns, flags[, spin_ns])");
        return NULL;
    }
    if (cc_names() < 0)
        return NULL;
    long fdl = PyLong_AsLong(args[0]);
    PyObject *s = args[2], *lock = args[3], *busy = args[4], *hold = args[5];
    PyObject *requests = args[6];
    long poll_ms = PyLong_AsLong(args[7]);
    long long window_ns = PyLong_AsLongLong(args[8]);
    long flags = PyLong_AsLong(args[9]);
    long long spin_ns = nargs > 10 ? PyLong_AsLongLong(args[10]) : 0;
    if (PyErr_Occurred())
        return NULL;
    if (fdl < 0 || fdl > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "hotpath: bad fd");
        return NULL;
    }
    int fd = (int)fdl;
    PyObject *acq = PyObject_GetAttrString(lock, "acquire");
    PyObject *rel = acq ? PyObject_GetAttr(lock, cc_s_release) : NULL;
    PyObject *is_set = rel ? PyObject_GetAttr(busy, cc_s_is_set) : NULL;
    if (!is_set) {
        Py_XDECREF(acq);
        Py_XDECREF(rel);
        return NULL;
    }
    Py_buffer bb;
    if (PyObject_GetBuffer(args[1], &bb, PyBUF_WRITABLE) < 0) {
        Py_DECREF(acq);
        Py_DECREF(rel);
        Py_DECREF(is_set);
        return NULL;
    }
    unsigned char *buf = bb.buf;
    e->cc_entries++;
    long long code = 0, last = 0;
    unsigned long served = 0;
    int err = 0, locked = 0;
    PyObject *exc = NULL;
    for (;;) {
        ssize_t r;
        PyThreadState *ts = PyEval_SaveThread();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr;
        do {
            p.revents = 0;
            pr = poll(&p, 1, (int)poll_ms);
        } while (pr < 0 && errno == EINTR);
        if (pr <= 0) {
            err = pr < 0 ? errno : 0;
            PyEval_RestoreThread(ts);
            code = 0;
            break;
        }
        do {
            r = read(fd, buf, (size_t)bb.len);
        } while (r < 0 && errno == EINTR);
        int en = errno;
        PyEval_RestoreThread(ts);
        if (r < 0) {
            if (en == ENOENT) /* aborted before we got it: poll again */
                continue;
            if (en == EAGAIN) /* another reader took it: Python looks at busy first */
                code = -4;
            else if (en == ENODEV)
                code = -1;
            else
                err = en;
            break;
        }
        uint32_t opc = r >= IN_HEADER ? get_u32(buf + 4) : 0;
        if (r < IN_HEADER || r > CLOOP_BIG || !cloop_opcode(opc) ||
            get_u32(buf) != (uint32_t)r) {
            code = r; /* Python's, from _note on */
            break;
        }
        int slow = 0;
        long long tr = mono_ns();
        if (cc_note(s, buf) < 0 || cc_acquire(s, acq, rel, buf, r, &slow) < 0)
            goto error_unlocked;
        if (slow)
            e->cc_slow++;
        locked = 1;
        long long t0 = mono_ns();
        if (cc_account(s, hold, (int)flags) < 0)
            goto error_locked;
        int ordered = 0;
        int ok = cc_offer(s, &ordered);
        if (ok < 0)
            goto error_locked;
        if (!ok) {
            code = r; /* locked: Python's _dispatch */
            break;
        }
        ctx_t *c = ctx_take(e);
        if (!c) {
            code = r;
            break;
        }
        int op = serve_raw(e, buf, r, ordered, c);
        if (op > 0) {
            int w = c->total ? writev_all(fd, c->iov, c->niov, c->total, e) : 0;
            if (w && w != ENOENT && w != ENODEV)
                e->write_errors++;
            if (count_request_at(requests, op, t0, (last = mono_ns())) < 0) {
                PyErr_Clear(); /* the reply is out */
                e->errors++;
            }
        }
        ctx_give(e, c);
        if (op == 0) { /* declined, nothing changed: counted when Python offers it again */
            e->declined--;
            code = r;
            break;
        }
        if (op < 0) {
            code = -2;
            goto error_locked;
        }
        locked = 0;
        PyObject *x = PyObject_CallNoArgs(rel);
        if (!x)
            goto error_unlocked;
        Py_DECREF(x);
        e->cc_served++;
        e->cc_lock_ns += t0 - tr;
        e->cc_handle_ns += last - t0;
        served++;
        int up = served >= CLOOP_BATCH ? 0 : cc_stay_up(s, is_set, (int)flags, window_ns);
        if (up < 0)
            goto error_unlocked;
        if (!up) {
            code = -4;
            break;
        }
        if (flags & CC_CSPIN && spin_ns > 0) {
            if (cc_spin(e, s, fd, spin_ns) < 0)
                goto error_unlocked;
            /* the spin read nothing; as after Python's spin, the clone looks at its
             * state again (busy, done, the spell) before it reads */
            up = cc_stay_up(s, is_set, (int)flags, window_ns);
            if (up < 0)
                goto error_unlocked;
            if (!up) {
                code = -4;
                break;
            }
        }
        continue;
    error_locked:
        if (locked) {
            PyObject *t, *v, *tb;
            PyErr_Fetch(&t, &v, &tb);
            PyObject *y = PyObject_CallNoArgs(rel);
            if (!y)
                PyErr_Clear();
            Py_XDECREF(y);
            PyErr_Restore(t, v, tb);
            locked = 0;
        }
    error_unlocked:
        code = -2;
        exc = take_exception();
        break;
    }
    PyBuffer_Release(&bb);
    Py_DECREF(acq);
    Py_DECREF(rel);
    Py_DECREF(is_set);
    if (!last)
        last = mono_ns();
    if (err) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (exc)
        return Py_BuildValue("(LLN)", code, last, exc);
    if (code > 0) {
        e->cc_returned++;
        if (locked)
            return Py_BuildValue("(LLO)", code, last, Py_True);
    }
    return Py_BuildValue("(LL)", code, last);
}

/* Engine.clone_statistics(): the clone loop's counters (kept apart from statistics()'s
 * shared format string): requests answered, given back to Python, the fs lock taken
 * through Fairness._acquire (contended), and the total ns from the read's end to the
 * lock held (_note, the lock) and from there to the reply written (handle), for the
 * requests answered here, and the spins the loop ran (CC_CSPIN) and those that found a
 * request */
static PyObject *Engine_clone_statistics(Engine *e, PyObject *unused)
{
    return Py_BuildValue("{s:K,s:K,s:K,s:K,s:L,s:L,s:K,s:K}", "clone_loop_entries",
                         e->cc_entries, "clone_loop_served", e->cc_served,
                         "clone_loop_returned", e->cc_returned, "clone_loop_lock_waits",
                         e->cc_slow, "clone_loop_lock_ns", e->cc_lock_ns,
                         "clone_loop_handle_ns", e->cc_handle_ns, "clone_loop_spins",
                         e->cc_spins, "clone_loop_spin_hits", e->cc_spin_hits);
}
