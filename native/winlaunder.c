/*
 * mount.server._winfast, second half: the launder WRITE of a window page, in C.
 *
 * Why (docs/performance.md, "Window WRITEs and READs in C"): a page stored into through an
 * mmap of a window and then remapped is written back by the kernel inside the
 * remap's NOTIFY_INVAL_INODE (launder), with a WRITE carrying FUSE_WRITE_CACHE.
 * The write-back belongs to the object page the window showed when the store was
 * made (fsimpl's ``pending``), not to the one it shows now.  In Python this cost
 * ~220 us a WRITE, three quarters of it in fsimpl's ``object_changed`` asking the
 * rmap (a numpy pass per page-table chunk of every window) which other window
 * pages show the written object page; one step in five of the bench's stream pays
 * it.
 *
 * What: Engine.write(msg, fd) takes one FUSE request.  It checks the message, that
 * the inode is a window of this table and that the handle is of it; then, for a
 * one-page write-back of a window page whose ``pending`` target is known (the
 * common case: redirect, or DISCARD), when nothing the Python path would do needs
 * a notification, it applies what fsimpl's FileOps.write -> WindowIO.write ->
 * _write_back_pending (-> Mapping.write, _inval_object, object_changed) does to
 * the same Python objects and writes the reply to ``fd`` itself.  Any other WRITE
 * of a window goes to native/winwrite.c (a store through the page table).
 * Anything neither takes returns None, untouched but for the settle of the page
 * (which the Python path repeats identically), and the session answers it in
 * Python.
 *
 * The reply is written here, by the reader, never by the writer thread: that
 * thread may be blocked in the very NOTIFY_INVAL_INODE that waits for this
 * reply (docs/decisions.md, "The window REMAP fast path in C").
 *
 * What it checks, as the Python path does: the inode is a window of this table
 * and the handle ``fh`` exists and is of that inode (EBADF otherwise, in Python);
 * no access-mode check -- the Python path makes none for a write-back (the kernel
 * chose a writable file of its own).  Every index into a page-table chunk, a page
 * cache chunk or an arena segment is checked against the buffer it indexes.
 */
#include "winfast.h"

#include <errno.h>
#include <unistd.h>

#define OP_WRITE 16
#define WRITE_IN 40
#define FUSE_WRITE_CACHE 1

static PyObject *s_wins, *s_handles, *s_ino, *s_npages, *s_cached, *s_pending, *s_pushed,
    *s_obj, *s_mapping, *s_objs, *s_by_mm, *s_rmap, *s_i_mmap, *s_nonlinear, *s_mm, *s_start,
    *s_end, *s_pgoff, *s_pt, *s_chunks, *s_bits, *s_window, *s_address, *s_size, *s_pages,
    *s_frames, *s_pflags, *s_gen, *s_arena, *s_nshared, *s_fps, *s_addrs, *s_replaying,
    *s_fstats, *s_faults, *s_write, *s_minor, *s_pages_n, *s_lookups, *s_stats, *s_inodes,
    *s_ops, *s_now, *s_mtime, *s_ctime, *s_k_write, *s_k_redirected, *s_k_discarded;

#define INTERN(var, text) \
    do { if (!((var) = PyUnicode_InternFromString(text))) return -1; } while (0)

int winlaunder_init(void)
{
    INTERN(s_wins, "wins");
    INTERN(s_handles, "_handles");
    INTERN(s_ino, "ino");
    INTERN(s_npages, "npages");
    INTERN(s_cached, "cached");
    INTERN(s_pending, "pending");
    INTERN(s_pushed, "pushed");
    INTERN(s_obj, "obj");
    INTERN(s_mapping, "mapping");
    INTERN(s_objs, "objs");
    INTERN(s_by_mm, "_by_mm");
    INTERN(s_rmap, "rmap");
    INTERN(s_i_mmap, "i_mmap");
    INTERN(s_nonlinear, "i_mmap_nonlinear");
    INTERN(s_mm, "mm");
    INTERN(s_start, "start");
    INTERN(s_end, "end");
    INTERN(s_pgoff, "pgoff");
    INTERN(s_pt, "pt");
    INTERN(s_chunks, "_chunks");
    INTERN(s_bits, "bits");
    INTERN(s_window, "window");
    INTERN(s_address, "address");
    INTERN(s_size, "size");
    INTERN(s_pages, "pages");
    INTERN(s_frames, "_frames");
    INTERN(s_pflags, "_flags");
    INTERN(s_gen, "gen");
    INTERN(s_arena, "arena");
    INTERN(s_nshared, "nshared");
    INTERN(s_fps, "fps");
    INTERN(s_addrs, "_addrs");
    INTERN(s_replaying, "replaying");
    INTERN(s_fstats, "fstats");
    INTERN(s_faults, "faults");
    INTERN(s_write, "write");
    INTERN(s_minor, "minor");
    INTERN(s_pages_n, "pages");
    INTERN(s_lookups, "lookups");
    INTERN(s_stats, "stats");
    INTERN(s_inodes, "_inodes");
    INTERN(s_ops, "_ops");
    INTERN(s_now, "_now");
    INTERN(s_mtime, "mtime_ns");
    INTERN(s_ctime, "ctime_ns");
    INTERN(s_k_write, "write");
    INTERN(s_k_redirected, "writeback_redirected");
    INTERN(s_k_discarded, "writeback_discarded");
    return 0;
}

static int in_list(const long long *v, int n, long long x)
{
    for (int k = 0; k < n; k++)
        if (v[k] == x)
            return 1;
    return 0;
}

/* Window page ``page`` of a window: not one of [self_lo, self_hi) of self_ws, and in
 * ``cached``?  1 / 0 / -1 (error). */
static int other_cached(PyObject *ws, PyObject *cached, long long page, PyObject *self_ws,
                        long long self_lo, long long self_hi)
{
    if (ws == self_ws && page >= self_lo && page < self_hi)
        return 0; /* a written page itself: its kernel copy is the new data */
    PyObject *key = PyLong_FromLongLong(page);
    if (!key)
        return -1;
    int in = PySet_Contains(cached, key);
    Py_DECREF(key);
    return in;
}

/*
 * Whether a window page (other than pages [self_lo, self_hi) of ``self_ws``) that the
 * kernel may cache shows one of the object pages ``pgs`` (npg of them, at most
 * MAXW) through the nonlinear VMA ``vma``: what fsimpl's object_changed ->
 * Rmap.lookup -> PageTable.find_pgoffs (+ the linear position of none entries)
 * finds, then _drop_cached's intersection with ``cached``.  1 yes, 0 no, -1 cannot
 * tell (decline).
 */
int shown_and_cached(PyObject *table_by_mm, PyObject *vma, const long long *pgs, int npg,
                     PyObject *self_ws, long long self_lo, long long self_hi)
{
    long long pmin = pgs[0], pmax = pgs[0];
    for (int q = 1; q < npg; q++) {
        pmin = pgs[q] < pmin ? pgs[q] : pmin;
        pmax = pgs[q] > pmax ? pgs[q] : pmax;
    }
    vmaview_t v;
    int r = vmaview_get(table_by_mm, vma, &v);
    if (r < 1)
        return r;
    r = -1;
    PyObject *ws = v.ws, *cached = v.cached;
    long long start_vpn = v.start_vpn, npages = v.npages, lo = v.lo;
    /* present or file entries holding one of pgs */
    Py_ssize_t pos = 0;
    long long vpn0, vpn;
    Py_buffer bv, pv;
    int g;
    while ((g = vmaview_next(&v, &pos, pmin, pmax, &vpn0, &bv, &pv)) > 0) {
        const uint8_t *bits = bv.buf;
        const int64_t *pgo = pv.buf;
        int hit = 0;
        for (int j = 0; j < CHUNK && !hit; j++) {
            int b = bits[j];
            if (!(b & (PTE_PRESENT | PTE_FILE)) || (b & PTE_ANON) || !in_list(pgs, npg, pgo[j]))
                continue;
            vpn = vpn0 + j;
            if (vpn < start_vpn || vpn >= start_vpn + npages)
                continue;
            int in = other_cached(ws, cached, lo + (vpn - start_vpn), self_ws, self_lo,
                                  self_hi);
            hit = in < 0 ? -1 : in;
        }
        PyBuffer_Release(&bv);
        PyBuffer_Release(&pv);
        if (hit) {
            r = hit < 0 ? -1 : 1;
            goto out;
        }
    }
    if (g < 0)
        goto out;
    /* none entries at the linear position of one of pgs show it too */
    for (int q = 0; q < npg; q++) {
        int none = vmaview_none_at(&v, pgs[q], &vpn);
        if (none < 0)
            goto out;
        if (!none)
            continue;
        int in = other_cached(ws, cached, lo + (vpn - start_vpn), self_ws, self_lo, self_hi);
        if (in) {
            r = in < 0 ? -1 : 1;
            goto out;
        }
    }
    r = 0;
out:
    if (r < 0)
        PyErr_Clear();
    vmaview_clear(&v);
    return r;
}

/* Write a WRITE's reply (fuse_out_header + fuse_write_out{size, padding}) to fd: 0 or
 * the errno.  With the GIL held: a reply write does not block (releasing it here
 * made no difference measurable at load 4, A/B in docs/performance.md). */
int write_reply(Engine *e, int fd, uint64_t unique, uint32_t size)
{
    unsigned char reply[24];
    put_u32(reply, sizeof reply);
    put_u32(reply + 4, 0);
    put_u64(reply + 8, unique);
    put_u32(reply + 16, size);
    put_u32(reply + 20, 0);
    ssize_t r;
    do {
        r = write(fd, reply, sizeof reply);
    } while (r < 0 && errno == EINTR);
    int err = r < 0 ? errno : 0;
    if (err) {
        pthread_mutex_lock(&e->mu);
        e->reply_errors++;
        pthread_mutex_unlock(&e->mu);
    }
    return err;
}

/* The window, inode and handle of a READ or WRITE (FileOps: _reg(ino), _handle(fh, ino)),
 * shared by the launder here and native/winread.c. 1: nodeid has no window (the file's
 * own path); -1: decline, *line the source line of the failed check; 0: found, *ws
 * and *inode owned, *h borrowed from *handles. On every return the references handed
 * back (*wins, *ikey, *ws, *inodes, *inode, *handles) are the caller's to release. */
int window_and_handle(Engine *e, uint64_t nodeid, uint64_t fh, PyObject **wins,
                      PyObject **ikey, PyObject **ws, PyObject **inodes, PyObject **inode,
                      PyObject **handles, PyObject **h, long *line)
{
#define WDECLINE() do { *line = __LINE__; return -1; } while (0)
    *wins = lean_getattr(e->table, s_wins);
    if (!*wins || !PyDict_Check(*wins))
        WDECLINE();
    *ikey = PyLong_FromUnsignedLongLong(nodeid);
    if (!*ikey)
        WDECLINE();
    *ws = PyDict_GetItemWithError(*wins, *ikey); /* borrowed */
    if (!*ws)
        return 1;
    Py_INCREF(*ws);
    *inodes = lean_getattr(e->fs, s_inodes);
    if (!*inodes || !PyDict_Check(*inodes))
        WDECLINE();
    *inode = PyDict_GetItemWithError(*inodes, *ikey);
    if (!*inode)
        WDECLINE();
    Py_INCREF(*inode);
    *handles = lean_getattr(e->fs, s_handles);
    if (!*handles || !PyDict_Check(*handles))
        WDECLINE();
    PyObject *hk = PyLong_FromUnsignedLongLong(fh);
    if (!hk)
        WDECLINE();
    *h = PyDict_GetItemWithError(*handles, hk); /* borrowed */
    Py_DECREF(hk);
    if (!*h)
        WDECLINE(); /* EBADF, in Python */
    long long hino;
    if (attr_ll(*h, s_ino, &hino) < 0 || (uint64_t)hino != nodeid)
        WDECLINE();
    return 0;
#undef WDECLINE
}

#define DECLINE() do { e->last_launder_decline = __LINE__; goto decline; } while (0)

/*
 * Engine.write(msg, fd) -> None (declined: answer it in Python) or 0 (answered:
 * the reply is written to fd) or the errno of a failed reply write (the request
 * was answered as far as shmfs goes; ENOENT: the kernel no longer waits for it).
 */
PyObject *Engine_write(Engine *e, PyObject *args)
{
    PyObject *msgobj;
    int fd;
    Py_buffer mb = {0};
    PyObject *wins = NULL, *ikey = NULL, *ws = NULL, *handles = NULL, *inodes = NULL,
             *inode = NULL, *pushed = NULL, *pending = NULL, *key = NULL, *obj = NULL,
             *mapping = NULL, *objs = NULL, *ostate = NULL, *ocached = NULL, *rmap = NULL,
             *i_mmap = NULL, *nonlin = NULL, *by_mm = NULL, *pages = NULL, *pframes_d = NULL,
             *pflags_d = NULL, *arena = NULL, *addrs = NULL, *tmp = NULL, *tstats = NULL,
             *fsops = NULL, *fstats = NULL, *rstats = NULL, *now = NULL, *pgkey = NULL;
    Py_buffer pfr = {0}, pfl = {0};
    int have_pc = 0;
    PyObject *result = NULL;

    if (!PyArg_ParseTuple(args, "Oi", &msgobj, &fd))
        return NULL;
    if (PyObject_GetBuffer(msgobj, &mb, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *m = mb.buf;
    /* the cheap tests first: every WRITE of a regular file passes through here */
    if (mb.len <= IN_HEADER + WRITE_IN || mb.len > IN_HEADER + WRITE_IN + MAXW * PAGE_SIZE ||
        get_u32(m + 4) != OP_WRITE || get_u32(m) != (uint32_t)mb.len || get_u32(m + 36) != 0)
        goto decline_quiet;
    const unsigned char *w = m + IN_HEADER;
    uint64_t unique = get_u64(m + 8), nodeid = get_u64(m + 16);
    uint64_t fh = get_u64(w), off = get_u64(w + 8);
    uint32_t wsize = get_u32(w + 16), wflags = get_u32(w + 20);
    if ((wflags != 0 && wflags != FUSE_WRITE_CACHE) || wsize != mb.len - IN_HEADER - WRITE_IN ||
        off >= (1ULL << 46) || nodeid > (uint64_t)LLONG_MAX || fh > (uint64_t)LLONG_MAX)
        goto decline_quiet;
    const unsigned char *data = w + WRITE_IN;
    long long i = (long long)(off >> PAGE_SHIFT);
    PyObject *hobj = NULL; /* the handle (borrowed from fs._handles) */

    /* ---- phase 1: look (the settle is the one change: Python repeats it as is) ---- */
    {
        long line;
        int wr = window_and_handle(e, nodeid, fh, &wins, &ikey, &ws, &inodes, &inode,
                                   &handles, &hobj, &line);
        if (wr > 0)
            goto decline_quiet; /* not a window: the file's own path */
        if (wr < 0) {
            e->last_launder_decline = line;
            goto decline;
        }
    }
    if (wflags != FUSE_WRITE_CACHE || wsize != PAGE_SIZE || (off & (PAGE_SIZE - 1))) {
        /* not a one-page write-back: a store through the page table (winwrite.c) */
        wreq_t rq = {e, fd, data, unique, nodeid, off, wsize, wflags, ws, inode, hobj};
        result = winwrite_store(&rq);
        goto out_buf;
    }
    long long npages;
    if (attr_ll(ws, s_npages, &npages) < 0 || i >= npages)
        DECLINE(); /* past the window's end: Python writes nothing */
    pushed = lean_getattr(ws, s_pushed);
    pending = lean_getattr(ws, s_pending);
    if (!pushed || !pending || !PySet_Check(pushed) || !PyDict_Check(pending))
        DECLINE();
    key = PyLong_FromLongLong(i);
    if (!key)
        DECLINE();
    if (settle(e, nodeid, (uint64_t)i, key, pushed, pending) < 0)
        DECLINE(); /* only an allocation can fail in it, before it changed anything */
    PyObject *target = PyDict_GetItemWithError(pending, key); /* borrowed */
    if (!target) {
        if (PyErr_Occurred())
            DECLINE();
        /* not pending: a write-back through the page table (winwrite.c) */
        wreq_t rq = {e, fd, data, unique, nodeid, off, wsize, wflags, ws, inode, hobj};
        result = winwrite_store(&rq);
        goto out_buf;
    }
    int discard = target == Py_None;
    long long tpg = 0, tprot = 0, msize = 0, frame = 0;
    int m_full = 0;
    uint8_t *pflag = NULL;
    unsigned char *dst = NULL;
    if (!discard) {
        if (!PyTuple_Check(target) || PyTuple_GET_SIZE(target) != 2)
            DECLINE();
        tpg = PyLong_AsLongLong(PyTuple_GET_ITEM(target, 0));
        tprot = PyLong_AsLongLong(PyTuple_GET_ITEM(target, 1));
        if (PyErr_Occurred() || tpg < 0 || tpg >= (1LL << 46))
            DECLINE();
        if (!(tprot & PROT_WRITE_))
            DECLINE(); /* refused: an invalidation after the reply, Python's */
        obj = lean_getattr(ws, s_obj);
        mapping = obj ? lean_getattr(obj, s_mapping) : NULL;
        if (!mapping || attr_ll(mapping, s_size, &msize) < 0)
            DECLINE();
        long long room = msize - (tpg << PAGE_SHIFT); /* never extends the object */
        if (room > 0 && room < PAGE_SIZE)
            DECLINE(); /* a partial page at the object's end */
        m_full = room >= PAGE_SIZE;
    }
    if (m_full) {
        /* _inval_object: the kernel's copy of the object page would be invalidated */
        long long oino;
        if (attr_ll(obj, s_ino, &oino) < 0)
            DECLINE();
        objs = lean_getattr(e->table, s_objs);
        if (!objs || !PyDict_Check(objs))
            DECLINE();
        PyObject *ok = PyLong_FromLongLong(oino);
        if (!ok)
            DECLINE();
        ostate = PyDict_GetItemWithError(objs, ok);
        Py_DECREF(ok);
        if (!ostate)
            DECLINE();
        Py_INCREF(ostate);
        ocached = lean_getattr(ostate, s_cached);
        if (!ocached || !PySet_Check(ocached))
            DECLINE();
        pgkey = PyLong_FromLongLong(tpg);
        if (!pgkey)
            DECLINE();
        int oc = PySet_Contains(ocached, pgkey);
        if (oc != 0)
            DECLINE();
        /* object_changed: the window pages (of any window) that show tpg and that the
         * kernel may cache would be invalidated: only a launder that needs none */
        rmap = lean_getattr(mapping, s_rmap);
        if (!rmap || rmap == Py_None)
            DECLINE();
        i_mmap = lean_getattr(rmap, s_i_mmap);
        if (!i_mmap)
            DECLINE();
        Py_ssize_t nlin = PyObject_Length(i_mmap);
        if (nlin != 0)
            DECLINE(); /* a linear VMA (a window never remapped): Python */
        nonlin = lean_getattr(rmap, s_nonlinear);
        by_mm = lean_getattr(e->table, s_by_mm);
        if (!nonlin || !PyDict_Check(nonlin) || !by_mm || !PyDict_Check(by_mm))
            DECLINE();
        Py_ssize_t pos = 0;
        PyObject *vk, *vma;
        while (PyDict_Next(nonlin, &pos, &vk, &vma)) {
            int s = shown_and_cached(by_mm, vma, &tpg, 1, ws, i, i + 1);
            if (s != 0)
                DECLINE();
        }
        /* Mapping.write -> write1: a resident, private frame of the object */
        long long nshared, fps;
        pages = lean_getattr(mapping, s_pages);
        arena = lean_getattr(mapping, s_arena);
        if (!pages || !arena || attr_ll(arena, s_nshared, &nshared) < 0 ||
            attr_ll(arena, s_fps, &fps) < 0)
            DECLINE();
        if (nshared != 0 || fps <= 0)
            DECLINE(); /* copy-on-write sharing in use */
        tmp = lean_getattr(arena, s_replaying);
        if (!tmp || PyObject_IsTrue(tmp) != 0)
            DECLINE();
        Py_CLEAR(tmp);
        pframes_d = lean_getattr(pages, s_frames);
        pflags_d = lean_getattr(pages, s_pflags);
        if (!pframes_d || !pflags_d || !PyDict_Check(pframes_d) || !PyDict_Check(pflags_d))
            DECLINE();
        PyObject *ck = PyLong_FromLongLong(tpg >> CHUNK_SHIFT);
        if (!ck)
            DECLINE();
        PyObject *fa = PyDict_GetItemWithError(pframes_d, ck);
        PyObject *fl = fa ? PyDict_GetItemWithError(pflags_d, ck) : NULL;
        Py_DECREF(ck);
        if (!fa || !fl)
            DECLINE(); /* a hole: write1 allocates, Python's */
        if (get_array_obj(fa, CHUNK, 8, &pfr) < 0)
            DECLINE();
        if (get_array_obj(fl, CHUNK, 1, &pfl) < 0) {
            PyBuffer_Release(&pfr);
            DECLINE();
        }
        have_pc = 1;
        int slot = (int)(tpg & (CHUNK - 1));
        frame = ((int64_t *)pfr.buf)[slot];
        pflag = (uint8_t *)pfl.buf + slot;
        if (frame <= 0)
            DECLINE();
        addrs = lean_getattr(arena, s_addrs);
        if (!addrs || !PyList_Check(addrs))
            DECLINE();
        long long seg = frame / fps, idx = frame % fps;
        if (seg >= PyList_GET_SIZE(addrs))
            DECLINE();
        unsigned long long base = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(addrs, seg));
        if (base == (unsigned long long)-1 && PyErr_Occurred())
            DECLINE();
        dst = (unsigned char *)(uintptr_t)base + ((size_t)idx << PAGE_SHIFT);
        fstats = lean_fstats(mapping, s_fstats);
        rstats = lean_getattr(rmap, s_stats);
        if (!fstats || !rstats)
            DECLINE();
    }
    tstats = lean_getattr(e->table, s_stats);
    fsops = lean_getattr(e->fs, s_ops);
    if (!tstats || !PyDict_Check(tstats) || !fsops || !PyDict_Check(fsops))
        DECLINE();

    /* ---- phase 2: apply, in the Python path's order ---- */
    if (incr_item(fsops, s_k_write, 1) < 0) /* @counted FileOps.write */
        goto fail;
    if (discard) {
        if (incr_item(tstats, s_k_discarded, 1) < 0)
            goto fail;
    } else {
        if (m_full) {
            /* write1: UPTODATE|DIRTY (the generation moves), a minor write fault */
            if ((*pflag & (PG_UPTODATE | PG_DIRTY)) != (PG_UPTODATE | PG_DIRTY)) {
                if (incr_attr(pages, s_gen, 1) < 0)
                    goto fail;
                *pflag |= PG_UPTODATE | PG_DIRTY;
            }
            PyObject *fsl[2] = {e->fault_stats, fstats};
            for (int q = 0; q < 2; q++)
                if (incr_attr(fsl[q], s_faults, 1) < 0 || incr_attr(fsl[q], s_write, 1) < 0 ||
                    incr_attr(fsl[q], s_minor, 1) < 0 || incr_attr(fsl[q], s_pages_n, 1) < 0)
                    goto fail;
            memcpy(dst, data, PAGE_SIZE); /* store1 */
            if (incr_attr(rstats, s_lookups, 1) < 0) /* object_changed's rmap lookup */
                goto fail;
        }
        if (incr_item(tstats, s_k_redirected, 1) < 0)
            goto fail;
    }
    /* FileOps.write: n > 0 -> mtime and ctime */
    now = PyObject_CallMethodNoArgs(e->fs, s_now);
    if (!now || PyObject_SetAttr(inode, s_mtime, now) < 0 ||
        PyObject_SetAttr(inode, s_ctime, now) < 0)
        goto fail;
    PyBuffer_Release(&mb); /* nothing reads the message any more */
    int err = write_reply(e, fd, unique, PAGE_SIZE);
    pthread_mutex_lock(&e->mu);
    e->launders++;
    if (discard)
        e->launders_discarded++;
    pthread_mutex_unlock(&e->mu);
    result = PyLong_FromLong(err);
    goto out;

fail:
    /* an allocation failed after phase 2 began: the caller answers EIO */
    PyBuffer_Release(&mb); /* a no-op once released */
    result = NULL;
    goto out;

out_buf:
    PyBuffer_Release(&mb);
    goto out;

decline:
    if (PyErr_Occurred())
        PyErr_Clear();
    pthread_mutex_lock(&e->mu);
    e->launder_declined++;
    pthread_mutex_unlock(&e->mu);
decline_quiet:
    if (PyErr_Occurred())
        PyErr_Clear();
    PyBuffer_Release(&mb); /* a no-op once released */
    Py_INCREF(Py_None);
    result = Py_None;
out:
    if (have_pc) {
        PyBuffer_Release(&pfr);
        PyBuffer_Release(&pfl);
    }
    Py_XDECREF(wins);
    Py_XDECREF(ikey);
    Py_XDECREF(ws);
    Py_XDECREF(handles);
    Py_XDECREF(inodes);
    Py_XDECREF(inode);
    Py_XDECREF(pushed);
    Py_XDECREF(pending);
    Py_XDECREF(key);
    Py_XDECREF(obj);
    Py_XDECREF(mapping);
    Py_XDECREF(objs);
    Py_XDECREF(ostate);
    Py_XDECREF(ocached);
    Py_XDECREF(rmap);
    Py_XDECREF(i_mmap);
    Py_XDECREF(nonlin);
    Py_XDECREF(by_mm);
    Py_XDECREF(pages);
    Py_XDECREF(pframes_d);
    Py_XDECREF(pflags_d);
    Py_XDECREF(arena);
    Py_XDECREF(addrs);
    Py_XDECREF(tmp);
    Py_XDECREF(tstats);
    Py_XDECREF(fsops);
    Py_XDECREF(fstats);
    Py_XDECREF(rstats);
    Py_XDECREF(now);
    Py_XDECREF(pgkey);
    return result;
}
