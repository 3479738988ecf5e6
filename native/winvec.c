/*
 * The window QUERY and short REMAPV in C (issue 12, winvec).
 *
 * SHMFS_IOC_WIN_QUERY reports, for up to 512 window pages from ``first``, the object
 * page each shows, its flags (present, file PTE, dirty, own protection, beyond EOF,
 * resident in the object, cached by the kernel) and its effective protection:
 * mount/server/ioctl.py serve -> fsimpl WindowTable.query -> _state, then
 * encode_query_reply. It changes nothing but the table's "queries" counter, so
 * winvec_query() reads the same Python objects (the window's page-table chunks, the
 * object's page cache, the cached set), builds the same 8224-byte struct and writes
 * the reply itself, one writev(2), as native/winread.c writes a READ's (a reply
 * with no notification ahead of it: the Python path writes it directly too). It
 * declines (None, nothing read has changed) anything unusual: a malformed request
 * (Python's EINVAL / ENOTTY), no window or a handle that is not this inode's
 * (Python's ENOTTY / ENOENT / EBADF), a window of more than one VMA, a window whose
 * VMA is not exactly the window. uml_physmem's "query" is this call.
 *
 * It also holds the two halves of the refault native/winprot.c makes for a cached
 * page whose protection an MPROTECT leaves unchanged (fsimpl _changed_vec ->
 * _refault -> handle_mm_fault(read, prefault) -> do_nonlinear_fault -> fault()):
 * winvec_refault_frame() checks, before anything changes, that the fault would be
 * fault()'s one-resident-page MINOR case and finds the frame; winvec_refault()
 * counts it as fault() and _do_fault do once the PTE is present again.
 *
 * And the short REMAPV: 1 to 8 entries (fsimpl applies such a vector entry by entry,
 * each exactly a REMAP: WindowTable.remapv -> _remapv_each -> remap), whose window
 * ranges, each with the page after it (REMAP's snapshot), are pairwise disjoint.
 * winvec_remapv() runs Engine_remap's checks on every entry first (VEC_DRY: phase 1
 * only, the holes of all entries against the size= budget together), so it takes
 * the whole vector or declines it untouched; then applies the entries in order
 * (VEC_NOREPLY: each queues its notifications, no reply) and queues the REMAPV
 * reply after them: the struct copied back with ``done`` = count. Disjoint ranges
 * make each entry's checks independent of the entries before it (docs/decisions.md,
 * "The short REMAPV and QUERY in C").
 */
#include "winfast.h"

#include <errno.h>
#include <sys/uio.h>
#include <unistd.h>

#define QUERY_MAX 512
#define QUERY_HEAD_SIZE 32 /* u64 first; u32 count, flags; u64 npages, object_size */
#define QUERY_PAGE_SIZE 16 /* u64 pgoff; u32 flags, prot */
#define QUERY_SIZE (QUERY_HEAD_SIZE + QUERY_MAX * QUERY_PAGE_SIZE) /* 8224 */
/* _IOWR('S', 5, struct shmfs_win_query) */
#define QUERY_CMD ((3u << 30) | ((uint32_t)QUERY_SIZE << 16) | ('S' << 8) | 5u)

/* QUERY page flags (mount/winapi/abi.py) */
#define Q_PRESENT 0x01
#define Q_FILE 0x02
#define Q_DIRTY 0x04
#define Q_OWNPROT 0x08
#define Q_BEYOND_EOF 0x10
#define Q_RESIDENT 0x20
#define Q_CACHED 0x40

static PyObject *s_wins, *s_handles, *s_ino, *s_window, *s_mm, *s_vmas, *s_start, *s_end,
    *s_prot, *s_pgoff, *s_cached, *s_stats, *s_npages, *s_address, *s_pt, *s_chunks,
    *s_obj, *s_mapping, *s_size, *s_pages, *s_frames, *s_k_queries, *s_pflags, *s_arena,
    *s_nshared, *s_fstats, *s_faults, *s_read, *s_prefault, *s_via_vma, *s_minor, *s_epoch;

#define INTERN(var, text) \
    do { if (!((var) = PyUnicode_InternFromString(text))) return -1; } while (0)

int winvec_init(void)
{
    INTERN(s_wins, "wins");
    INTERN(s_handles, "_handles");
    INTERN(s_ino, "ino");
    INTERN(s_window, "window");
    INTERN(s_mm, "mm");
    INTERN(s_vmas, "_vmas");
    INTERN(s_start, "start");
    INTERN(s_end, "end");
    INTERN(s_prot, "prot");
    INTERN(s_pgoff, "pgoff");
    INTERN(s_cached, "cached");
    INTERN(s_stats, "stats");
    INTERN(s_npages, "npages");
    INTERN(s_address, "address");
    INTERN(s_pt, "pt");
    INTERN(s_chunks, "_chunks");
    INTERN(s_obj, "obj");
    INTERN(s_mapping, "mapping");
    INTERN(s_size, "size");
    INTERN(s_pages, "pages");
    INTERN(s_frames, "_frames");
    INTERN(s_k_queries, "queries");
    INTERN(s_pflags, "_flags");
    INTERN(s_arena, "arena");
    INTERN(s_nshared, "nshared");
    INTERN(s_fstats, "fstats");
    INTERN(s_faults, "faults");
    INTERN(s_read, "read");
    INTERN(s_prefault, "prefault");
    INTERN(s_via_vma, "via_vma");
    INTERN(s_minor, "minor");
    INTERN(s_epoch, "epoch");
    return 0;
}

int winvec_is_query(const unsigned char *m, Py_ssize_t len)
{
    return len == IN_HEADER + IOCTL_IN + QUERY_SIZE &&
           get_u32(m + IN_HEADER + 12) == QUERY_CMD;
}

/* dict.get(key) for an int key: borrowed, NULL when absent (no error left set) */
static PyObject *get_int_key(PyObject *d, long long key)
{
    PyObject *k = PyLong_FromLongLong(key);
    if (!k)
        return NULL;
    PyObject *v = PyDict_GetItemWithError(d, k);
    Py_DECREF(k);
    return v;
}

#define DECLINE() do { e->last_decline = __LINE__; goto decline; } while (0)

/* The message (known to be a QUERY of the right length by winvec_is_query). None:
 * declined, nothing changed; else 0 (no notification: the reply is written). */
PyObject *winvec_query(Engine *e, const unsigned char *m, Py_ssize_t len)
{
    PyObject *ws = NULL, *window = NULL, *mm = NULL, *vmas = NULL, *vma = NULL, *pt = NULL;
    PyObject *chunks = NULL, *cached = NULL, *tstats = NULL, *obj = NULL, *mapping = NULL;
    PyObject *pages = NULL, *pframes = NULL, *wins = NULL, *handles = NULL, *ikey = NULL;
    unsigned char *buf = NULL;
    PyObject *result = NULL;

    if (get_u32(m) != (uint32_t)len || get_u32(m + 4) != OP_IOCTL || get_u32(m + 36) != 0)
        goto decline_early;
    uint64_t unique = get_u64(m + 8), nodeid = get_u64(m + 16);
    const unsigned char *io = m + IN_HEADER;
    uint64_t fh = get_u64(io);
    /* no ioctl flags (FUSE_IOCTL_DIR: ENOTTY in Python), in/out sizes exactly serve's */
    if (get_u32(io + 8) != 0 || get_u32(io + 24) != QUERY_SIZE || get_u32(io + 28) < QUERY_SIZE)
        goto decline_early;
    const unsigned char *d = io + IOCTL_IN;
    uint64_t first = get_u64(d);
    uint32_t count = get_u32(d + 8), qflags = get_u32(d + 12);
    if (qflags != 0 || count > QUERY_MAX || nodeid > (uint64_t)LLONG_MAX ||
        fh > (uint64_t)LLONG_MAX)
        goto decline_early; /* EINVAL in Python */

    /* ---- look (nothing changes until the counter at the end) ---- */
    wins = lean_getattr(e->table, s_wins);
    if (!wins || !PyDict_Check(wins))
        DECLINE();
    ikey = PyLong_FromUnsignedLongLong(nodeid);
    if (!ikey)
        DECLINE();
    ws = PyDict_GetItemWithError(wins, ikey); /* _win: ENOTTY / ENOENT in Python */
    Py_CLEAR(ikey);
    if (!ws)
        DECLINE();
    Py_INCREF(ws);
    /* fs._handle(fh, ino): any handle of this inode (a QUERY only reads) */
    handles = lean_getattr(e->fs, s_handles);
    if (!handles || !PyDict_Check(handles))
        DECLINE();
    ikey = PyLong_FromUnsignedLongLong(fh);
    if (!ikey)
        DECLINE();
    PyObject *h = PyDict_GetItemWithError(handles, ikey); /* borrowed */
    Py_CLEAR(ikey);
    if (!h)
        DECLINE(); /* EBADF */
    long long hino;
    if (attr_ll(h, s_ino, &hino) < 0 || (uint64_t)hino != nodeid)
        DECLINE(); /* EBADF */
    long long npages, waddr;
    if (attr_ll(ws, s_npages, &npages) < 0)
        DECLINE();
    window = lean_getattr(ws, s_window);
    if (!window || attr_ll(window, s_address, &waddr) < 0)
        DECLINE();
    mm = lean_getattr(window, s_mm);
    if (!mm)
        DECLINE();
    vmas = lean_getattr(mm, s_vmas);
    if (!vmas || !PyList_Check(vmas) || PyList_GET_SIZE(vmas) != 1)
        DECLINE(); /* a split window (MPROTECT_VMA): _state across VMAs, Python */
    vma = PyList_GET_ITEM(vmas, 0);
    Py_INCREF(vma);
    long long vstart, vend, vprot, vpgoff;
    if (attr_ll(vma, s_start, &vstart) < 0 || attr_ll(vma, s_end, &vend) < 0 ||
        attr_ll(vma, s_prot, &vprot) < 0 || attr_ll(vma, s_pgoff, &vpgoff) < 0)
        DECLINE();
    if (vstart != waddr || vend != waddr + (npages << PAGE_SHIFT) || npages < 0)
        DECLINE();
    pt = lean_getattr(vma, s_pt);
    if (!pt)
        DECLINE();
    chunks = lean_getattr(pt, s_chunks);
    cached = lean_getattr(ws, s_cached);
    tstats = lean_getattr(e->table, s_stats);
    obj = lean_getattr(ws, s_obj);
    if (!chunks || !PyDict_Check(chunks) || !cached || !PySet_Check(cached) || !tstats ||
        !PyDict_Check(tstats) || !obj)
        DECLINE();
    mapping = lean_getattr(obj, s_mapping);
    long long msize;
    if (!mapping || attr_ll(mapping, s_size, &msize) < 0 || msize < 0)
        DECLINE();
    pages = lean_getattr(mapping, s_pages);
    if (!pages)
        DECLINE();
    pframes = lean_getattr(pages, s_frames);
    if (!pframes)
        DECLINE();
    int pc_dict = PyDict_Check(pframes); /* else the empty page cache's sentinel */

    long long lo = first < (uint64_t)npages ? (long long)first : npages;
    long long hi = lo + (long long)count < npages ? lo + (long long)count : npages;
    long long eof_pages = (msize + PAGE_SIZE - 1) >> PAGE_SHIFT;
    long long base = waddr >> PAGE_SHIFT, vbase = vstart >> PAGE_SHIFT;

    buf = calloc(1, 32 + QUERY_SIZE); /* fuse_out_header + fuse_ioctl_out + the struct */
    if (!buf) {
        PyErr_NoMemory();
        goto fail;
    }
    unsigned char *q = buf + 32;
    put_u64(q, first);
    put_u32(q + 8, (uint32_t)(hi - lo));
    put_u32(q + 12, 0);
    put_u64(q + 16, (uint64_t)npages);
    put_u64(q + 24, (uint64_t)msize);

    long long ckey = -1, pkey = -1;
    const uint8_t *cbits = NULL, *cprot = NULL;
    const int64_t *cpgoff = NULL, *pfr = NULL;
    chunk_views cv = {0};
    Py_buffer pview = {0};
    int have_pview = 0;
    for (long long i = lo; i < hi; i++) {
        long long vpn = base + i;
        if ((vpn >> CHUNK_SHIFT) != ckey) {
            release_chunk(&cv);
            cbits = NULL;
            ckey = vpn >> CHUNK_SHIFT;
            PyObject *c = get_int_key(chunks, ckey);
            if (c) {
                if (load_chunk(c, &cv) < 0)
                    goto decline_views;
                cbits = cv.bits.buf;
                cprot = cv.prot.buf;
                cpgoff = cv.pgoff.buf;
            } else if (PyErr_Occurred()) {
                goto decline_views;
            }
        }
        int slot = (int)(vpn & (CHUNK - 1));
        int b = cbits ? cbits[slot] : 0;
        long long pg = (b & (PTE_PRESENT | PTE_FILE)) ? cpgoff[slot] : (vpn - vbase) + vpgoff;
        long long eff = (b & PTE_OWNPROT) ? cprot[slot] : vprot;
        uint32_t f = 0;
        if (b & PTE_PRESENT)
            f |= Q_PRESENT;
        if (b & PTE_FILE)
            f |= Q_FILE;
        if (b & PTE_DIRTY)
            f |= Q_DIRTY;
        if (b & PTE_OWNPROT)
            f |= Q_OWNPROT;
        if (pg >= eof_pages)
            f |= Q_BEYOND_EOF;
        if (pc_dict && pg >= 0) {
            if ((pg >> CHUNK_SHIFT) != pkey) {
                if (have_pview) {
                    PyBuffer_Release(&pview);
                    have_pview = 0;
                }
                pfr = NULL;
                pkey = pg >> CHUNK_SHIFT;
                PyObject *fa = get_int_key(pframes, pkey);
                if (fa) {
                    if (get_array_obj(fa, CHUNK, 8, &pview) < 0)
                        goto decline_views;
                    have_pview = 1;
                    pfr = pview.buf;
                } else if (PyErr_Occurred()) {
                    goto decline_views;
                }
            }
            if (pfr && pfr[pg & (CHUNK - 1)] >= 0)
                f |= Q_RESIDENT;
        }
        PyObject *k = PyLong_FromLongLong(i);
        if (!k)
            goto decline_views;
        int c = PySet_Contains(cached, k);
        Py_DECREF(k);
        if (c < 0)
            goto decline_views;
        if (c)
            f |= Q_CACHED;
        unsigned char *p = q + QUERY_HEAD_SIZE + (size_t)(i - lo) * QUERY_PAGE_SIZE;
        put_u64(p, (uint64_t)pg);
        put_u32(p + 8, f);
        put_u32(p + 12, (uint32_t)eff);
    }
    release_chunk(&cv);
    if (have_pview)
        PyBuffer_Release(&pview);

    /* ---- the one change, then the reply ---- */
    if (incr_item(tstats, s_k_queries, 1) < 0)
        goto fail;
    put_u32(buf, 32 + QUERY_SIZE);
    put_u32(buf + 4, 0);
    put_u64(buf + 8, unique);
    /* fuse_ioctl_out: result 0, flags 0, no iovs (calloc) */
    {
        ssize_t r;
        do {
            r = write(engine_reply_fd(e), buf, 32 + QUERY_SIZE); /* the reader's fd */
        } while (r < 0 && errno == EINTR);
        pthread_mutex_lock(&e->mu);
        e->queries++;
        e->handled++;
        if (r < 0) { /* ENOENT: interrupted, the kernel no longer waits (as _write_failed) */
            e->reply_errors++;
        }
        pthread_mutex_unlock(&e->mu);
    }
    result = PyLong_FromLong(0);
    goto out;

decline_views:
    release_chunk(&cv);
    if (have_pview)
        PyBuffer_Release(&pview);
    DECLINE();
fail:
    result = NULL;
    goto out;
decline:
    if (PyErr_Occurred())
        PyErr_Clear();
    e->declined++;
    Py_INCREF(Py_None);
    result = Py_None;
out:
    free(buf);
    Py_XDECREF(ws);
    Py_XDECREF(window);
    Py_XDECREF(mm);
    Py_XDECREF(vmas);
    Py_XDECREF(vma);
    Py_XDECREF(pt);
    Py_XDECREF(chunks);
    Py_XDECREF(cached);
    Py_XDECREF(tstats);
    Py_XDECREF(obj);
    Py_XDECREF(mapping);
    Py_XDECREF(pages);
    Py_XDECREF(pframes);
    Py_XDECREF(wins);
    Py_XDECREF(handles);
    Py_XDECREF(ikey);
    return result;

decline_early:
    e->declined++;
    Py_RETURN_NONE;
}

/* Phase 1 of the refault of object page ``pgoff`` (see the top): 0 and *frame when it
 * is a MINOR read prefault of a resident, up-to-date, unshared page inside the
 * object's size; -1 (decline; an error may be set) otherwise. */
int winvec_refault_frame(PyObject *mapping, long long pgoff, long long *frame)
{
    PyObject *arena = NULL, *pages = NULL, *fr_d = NULL, *fl_d = NULL;
    Py_buffer fv = {0}, lv = {0};
    int have = 0, r = -1;
    long long msize, nshared;
    if (pgoff < 0 || attr_ll(mapping, s_size, &msize) < 0 ||
        pgoff >= (msize + PAGE_SIZE - 1) >> PAGE_SHIFT)
        goto out; /* beyond EOF: SIGBUS, Python */
    arena = lean_getattr(mapping, s_arena);
    if (!arena || attr_ll(arena, s_nshared, &nshared) < 0 || nshared != 0)
        goto out; /* copy_file_range sharing: _install_bits asks is_shared, Python */
    pages = lean_getattr(mapping, s_pages);
    if (!pages)
        goto out;
    fr_d = lean_getattr(pages, s_frames);
    fl_d = lean_getattr(pages, s_pflags);
    if (!fr_d || !fl_d || !PyDict_Check(fr_d) || !PyDict_Check(fl_d))
        goto out;
    PyObject *fa = get_int_key(fr_d, pgoff >> CHUNK_SHIFT);
    PyObject *fl = fa ? get_int_key(fl_d, pgoff >> CHUNK_SHIFT) : NULL;
    if (!fa || !fl)
        goto out; /* a hole: the fault would allocate (MAJOR), Python */
    if (get_array_obj(fa, CHUNK, 8, &fv) < 0)
        goto out;
    if (get_array_obj(fl, CHUNK, 1, &lv) < 0) {
        PyBuffer_Release(&fv);
        goto out;
    }
    have = 1;
    int slot = (int)(pgoff & (CHUNK - 1));
    long long f = ((const int64_t *)fv.buf)[slot];
    if (f <= 0 || !(((const uint8_t *)lv.buf)[slot] & PG_UPTODATE))
        goto out; /* a hole, the zero frame, or a flag fault() would set: Python */
    *frame = f;
    r = 0;
out:
    if (have) {
        PyBuffer_Release(&fv);
        PyBuffer_Release(&lv);
    }
    Py_XDECREF(arena);
    Py_XDECREF(pages);
    Py_XDECREF(fr_d);
    Py_XDECREF(fl_d);
    return r;
}

/* Phase 2: the counters of one such refault -- fault()'s _count(read, prefault,
 * via_vma, MINOR, one page) into FAULT_STATS and the mapping's fstats, and the mm's
 * minor fault. -1 only on a failed allocation. */
int winvec_refault(Engine *e, PyObject *mapping, PyObject *mmstats)
{
    PyObject *fstats = lean_fstats(mapping, s_fstats);
    if (!fstats)
        return -1;
    PyObject *fsl[2] = {e->fault_stats, fstats};
    for (int q = 0; q < 2; q++) {
        if (incr_attr(fsl[q], s_faults, 1) < 0 || incr_attr(fsl[q], s_read, 1) < 0 ||
            incr_attr(fsl[q], s_prefault, 1) < 0 || incr_attr(fsl[q], s_via_vma, 1) < 0 ||
            incr_attr(fsl[q], s_minor, 1) < 0 || incr_attr(fsl[q], s_pages, 1) < 0) {
            Py_DECREF(fstats);
            return -1;
        }
    }
    Py_DECREF(fstats);
    return incr_attr(mmstats, s_minor, 1);
}

/* ------------------------------------------------------------- short REMAPV */

#define REMAPV_MAX 511
#define REMAPV_SIZE (16 + REMAPV_MAX * REMAP_SIZE) /* 16368 */
/* _IOWR('S', 10, struct shmfs_win_remapv) */
#define REMAPV_CMD ((3u << 30) | ((uint32_t)REMAPV_SIZE << 16) | ('S' << 8) | 10u)
#define REMAPV_SHORT 8 /* fsimpl's REMAPV_SCALAR_MAX: entry by entry up to here */
#define ENTRY_MSG (IN_HEADER + IOCTL_IN + REMAP_SIZE)

int winvec_is_remapv(const unsigned char *m, Py_ssize_t len)
{
    return len == IN_HEADER + IOCTL_IN + REMAPV_SIZE &&
           get_u32(m + IN_HEADER + 12) == REMAPV_CMD;
}

/* Engine_remap on one entry's REMAP message in the given mode: 1 taken (or would
 * be), 0 declined, -1 error (set). */
static int entry_remap(Engine *e, const unsigned char *msg, int mode, long *notes)
{
    PyObject *mv = PyBytes_FromStringAndSize((const char *)msg, ENTRY_MSG);
    if (!mv)
        return -1;
    e->vec_mode = mode;
    PyObject *r = Engine_remap(e, mv);
    e->vec_mode = VEC_NONE;
    Py_DECREF(mv);
    if (!r)
        return -1;
    int taken = r != Py_None;
    if (taken && notes && PyLong_Check(r))
        *notes += PyLong_AsLong(r);
    Py_DECREF(r);
    return taken;
}

/* The message (known to be a REMAPV of the right length by winvec_is_remapv). None:
 * declined, nothing changed; else the number of notifications queued ahead of the
 * reply. */
PyObject *winvec_remapv(Engine *e, const unsigned char *m, Py_ssize_t len)
{
    unsigned char msgs[REMAPV_SHORT][ENTRY_MSG];
    PyObject *wins = NULL, *ikey = NULL, *ws = NULL;
    batch_t *b = NULL;

    if (get_u32(m) != (uint32_t)len || get_u32(m + 4) != OP_IOCTL || get_u32(m + 36) != 0)
        goto decline_early;
    uint64_t unique = get_u64(m + 8), nodeid = get_u64(m + 16);
    const unsigned char *io = m + IN_HEADER;
    if (get_u32(io + 8) != 0 || get_u32(io + 24) != REMAPV_SIZE ||
        get_u32(io + 28) < REMAPV_SIZE || nodeid > (uint64_t)LLONG_MAX)
        goto decline_early;
    const unsigned char *d = io + IOCTL_IN;
    uint32_t count = get_u32(d), vflags = get_u32(d + 4), reserved = get_u32(d + 12);
    if (vflags || reserved || count < 1 || count > REMAPV_SHORT)
        goto decline_early; /* EINVAL, an empty or a long vector: Python */
    uint64_t lo[REMAPV_SHORT], hi[REMAPV_SHORT];
    for (uint32_t k = 0; k < count; k++) {
        const unsigned char *ent = d + 16 + (size_t)k * REMAP_SIZE;
        uint64_t start = get_u64(ent), size = get_u64(ent + 8);
        if ((start & (PAGE_SIZE - 1)) || (size & (PAGE_SIZE - 1)) || size < PAGE_SIZE ||
            size > (uint64_t)MAXPAGES * PAGE_SIZE || start >= (1ULL << 46))
            goto decline_early; /* Engine_remap would decline it too */
        lo[k] = start >> PAGE_SHIFT;
        hi[k] = lo[k] + (size >> PAGE_SHIFT); /* inclusive: REMAP's snapshot page */
        for (uint32_t j = 0; j < k; j++)
            if (lo[k] <= hi[j] && lo[j] <= hi[k])
                goto decline_early; /* entries that see each other: Python */
        unsigned char *msg = msgs[k];
        memcpy(msg, m, IN_HEADER);
        put_u32(msg, ENTRY_MSG);
        memcpy(msg + IN_HEADER, io, IOCTL_IN);
        put_u32(msg + IN_HEADER + 12, REMAP_CMD);
        put_u32(msg + IN_HEADER + 24, REMAP_SIZE);
        put_u32(msg + IN_HEADER + 28, 0);
        memcpy(msg + IN_HEADER + IOCTL_IN, ent, REMAP_SIZE);
    }
    wins = lean_getattr(e->table, s_wins);
    if (!wins || !PyDict_Check(wins))
        goto decline;
    ikey = PyLong_FromUnsignedLongLong(nodeid);
    if (!ikey)
        goto decline;
    ws = PyDict_GetItemWithError(wins, ikey);
    if (!ws)
        goto decline;
    Py_INCREF(ws);

    /* ---- phase 1: every entry's checks, nothing changes ---- */
    e->vec_holes = 0;
    for (uint32_t k = 0; k < count; k++) {
        int t = entry_remap(e, msgs[k], VEC_DRY, NULL);
        if (t < 0)
            goto decline;
        if (!t) { /* Engine_remap counted the decline */
            Py_XDECREF(wins);
            Py_XDECREF(ikey);
            Py_XDECREF(ws);
            Py_RETURN_NONE;
        }
    }
    /* the reply, built before anything changes: the struct copied back, done = count */
    size_t rlen = 32 + REMAPV_SIZE;
    b = malloc(sizeof(batch_t) + rlen);
    if (!b) {
        PyErr_NoMemory();
        goto fail;
    }
    memset(b, 0, sizeof(batch_t));
    b->cap = rlen;
    b->ino = nodeid;
    add_ioctl_reply(b, 0, unique, (uint32_t)rlen);
    memcpy(b->buf + 32, d, REMAPV_SIZE);
    put_u32(b->buf + 32 + 8, count); /* done */

    /* ---- phase 2: remapv's own epoch step, then each entry as its REMAP ---- */
    if (incr_attr(ws, s_epoch, 1) < 0)
        goto fail;
    long notes = 0;
    for (uint32_t k = 0; k < count; k++) {
        int t = entry_remap(e, msgs[k], VEC_NOREPLY, &notes);
        if (t < 0)
            goto fail;
        if (!t) { /* ruled out by the checks above: answered EIO, logged */
            PyErr_Format(PyExc_RuntimeError,
                         "REMAPV entry %u declined after its check (line %ld)", k,
                         e->last_decline);
            goto fail;
        }
    }

    /* ---- queue the reply behind the entries' batches ---- */
    pthread_mutex_lock(&e->mu);
    e->remapvs++;
    queue_and_wake(e, b);
    Py_XDECREF(wins);
    Py_XDECREF(ikey);
    Py_XDECREF(ws);
    return PyLong_FromLong(notes);

fail:
    free(b);
    Py_XDECREF(wins);
    Py_XDECREF(ikey);
    Py_XDECREF(ws);
    return NULL;
decline:
    if (PyErr_Occurred())
        PyErr_Clear();
    Py_XDECREF(wins);
    Py_XDECREF(ikey);
    Py_XDECREF(ws);
decline_early:
    e->declined++;
    Py_RETURN_NONE;
}
