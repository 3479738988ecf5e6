/*
 * mount.server._winfast, fourth part: the READ of window pages, in C.
 *
 * Why (docs/performance.md, "Window WRITEs and READs in C"): uml_physmem's guest faults are
 * window READs (a page not pushed by a populating remap: after an MPROTECT, a
 * REMAPV, a punch); each cost the daemon ~130 us in Python at load 5.
 *
 * What: Engine.read(msg, fd) takes a READ of 1 to MAXW pages inside one page-table
 * chunk of a window of one VMA whose every page has a PTE that allows a load and is
 * present (Mm._resolve's no-fault case) or a file PTE (the read fault, done as
 * fault() does it for one page: resident, or a hole it allocates), and does
 * what the session (its cancel of queued NOTIFY_STOREs of those pages), FileOps.read
 * and WindowIO.read do: the counters, ``pending``/``pushed`` dropped and ``cached``
 * added for the pages, fs._touch_atime (called: the atime rules stay Python's);
 * then it writes the reply -- the header and the arena pages, one writev(2).
 * Anything else returns None (after the cancel, which the Python path repeats).
 * Checks as Python's: a window of this table, a handle of that inode (no
 * access-mode check: FileOps.read makes none, the kernel checked open(2)).
 */
#include "winfast.h"

#include <errno.h>
#include <sys/uio.h>
#include <unistd.h>

#define OP_READ 15
#define READ_IN 40

static PyObject *s_npages, *s_cached, *s_pending,
    *s_pushed, *s_window, *s_address, *s_mm, *s_vmas, *s_start, *s_end, *s_prot, *s_pt,
    *s_chunks, *s_mapping, *s_arena, *s_fps, *s_addrs, *s_replaying,
    *s_stats, *s_ops, *s_touch, *s_k_read, *s_k_reads, *s_k_read_bytes, *s_pflags_d,
    *s_frames_d, *s_size, *s_pages, *s_gen, *s_nshared, *s_flags, *s_page_mkwrite,
    *s_write_notify, *s_fstats, *s_faults, *s_via_vma, *s_minor, *s_pages_n, *s_rd, *s_pgoff,
    *s_major, *s_pages_allocated, *s_obj, *s_ino;

#define INTERN(var, text) \
    do { if (!((var) = PyUnicode_InternFromString(text))) return -1; } while (0)

int winread_init(void)
{
    INTERN(s_npages, "npages");
    INTERN(s_obj, "obj");
    INTERN(s_ino, "ino");
    INTERN(s_cached, "cached");
    INTERN(s_pending, "pending");
    INTERN(s_pushed, "pushed");
    INTERN(s_window, "window");
    INTERN(s_address, "address");
    INTERN(s_mm, "mm");
    INTERN(s_vmas, "_vmas");
    INTERN(s_start, "start");
    INTERN(s_end, "end");
    INTERN(s_prot, "prot");
    INTERN(s_pt, "pt");
    INTERN(s_chunks, "_chunks");
    INTERN(s_mapping, "mapping");
    INTERN(s_arena, "arena");
    INTERN(s_fps, "fps");
    INTERN(s_addrs, "_addrs");
    INTERN(s_replaying, "replaying");
    INTERN(s_stats, "stats");
    INTERN(s_ops, "_ops");
    INTERN(s_touch, "_touch_atime");
    INTERN(s_k_read, "read");
    INTERN(s_k_reads, "reads");
    INTERN(s_k_read_bytes, "read_bytes");
    INTERN(s_pflags_d, "_flags");
    INTERN(s_frames_d, "_frames");
    INTERN(s_size, "size");
    INTERN(s_pages, "pages");
    INTERN(s_gen, "gen");
    INTERN(s_nshared, "nshared");
    INTERN(s_flags, "flags");
    INTERN(s_page_mkwrite, "page_mkwrite");
    INTERN(s_write_notify, "write_notify");
    INTERN(s_fstats, "fstats");
    INTERN(s_faults, "faults");
    INTERN(s_via_vma, "via_vma");
    INTERN(s_minor, "minor");
    INTERN(s_pages_n, "pages");
    INTERN(s_rd, "read");
    INTERN(s_pgoff, "pgoff");
    INTERN(s_major, "major");
    INTERN(s_pages_allocated, "pages_allocated");
    return 0;
}

static int pg_seen(const long long *v, int n, long long x)
{
    for (int k = 0; k < n; k++)
        if (v[k] == x)
            return 1;
    return 0;
}

#define DECLINE() do { e->last_read_decline = __LINE__; goto decline; } while (0)

PyObject *Engine_read(Engine *e, PyObject *args)
{
    PyObject *msgobj;
    int fd;
    Py_buffer mb = {0};
    chunk_views cv = {0};
    PyObject *result = NULL, *wins = NULL, *ikey = NULL, *ws = NULL, *inodes = NULL,
             *inode = NULL, *handles = NULL, *window = NULL, *mm = NULL, *vmas = NULL,
             *vma = NULL, *pt = NULL, *chunks = NULL, *mapping = NULL, *arena = NULL,
             *addrs = NULL, *tmp = NULL, *cached = NULL, *pending = NULL, *pushed = NULL,
             *tstats = NULL, *fsops = NULL, *keys[MAXW] = {0}, *pages = NULL,
             *pframes_d = NULL, *pflags_d = NULL, *fstats = NULL, *mmstats = NULL;
    /* pages that need a read fault (a file PTE of a resident object page) */
    int nf = 0, fk[MAXW], nholes = 0, fnone[MAXW];
    long long fframe[MAXW], fpg[MAXW];
    PyObject *budget = NULL;
    uint8_t *fpflag[MAXW], fbits[MAXW];
    Py_buffer pcv[2 * MAXW];
    int npcv = 0;

    if (!PyArg_ParseTuple(args, "Oi", &msgobj, &fd))
        return NULL;
    if (PyObject_GetBuffer(msgobj, &mb, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *m = mb.buf;
    if (mb.len != IN_HEADER + READ_IN || get_u32(m + 4) != OP_READ ||
        get_u32(m) != (uint32_t)mb.len || get_u32(m + 36) != 0)
        goto decline_quiet;
    uint64_t unique = get_u64(m + 8), nodeid = get_u64(m + 16);
    const unsigned char *rd = m + IN_HEADER;
    uint64_t fh = get_u64(rd), off = get_u64(rd + 8);
    uint32_t size = get_u32(rd + 16);
    PyBuffer_Release(&mb);
    if (size == 0 || size > MAXW * PAGE_SIZE || off >= (1ULL << 46) ||
        nodeid > (uint64_t)LLONG_MAX || fh > (uint64_t)LLONG_MAX)
        goto decline_quiet;

    {
        PyObject *h; /* borrowed */
        long line;
        int wr = window_and_handle(e, nodeid, fh, &wins, &ikey, &ws, &inodes, &inode,
                                   &handles, &h, &line);
        if (wr > 0)
            goto decline_quiet; /* not a window: the file's own path */
        if (wr < 0) {
            e->last_read_decline = line;
            goto decline;
        }
    }
    /* the session's _cancel_stores: a READ answered first has the newer data */
    long long first = (long long)(off >> PAGE_SHIFT);
    long long last = (long long)((off + size - 1) >> PAGE_SHIFT);
    if (cancel_stores(e, nodeid, first, last) < 0)
        DECLINE();

    long long npages, waddr, vstart, vend, vprot;
    if (attr_ll(ws, s_npages, &npages) < 0)
        DECLINE();
    if (off + size > (uint64_t)npages << PAGE_SHIFT)
        DECLINE(); /* clipped (or empty) at the window's end: Python */
    long long lo = first, hi = last + 1;
    int n = (int)(hi - lo);
    if (n < 1 || n > MAXW)
        DECLINE();
    window = lean_getattr(ws, s_window);
    if (!window || attr_ll(window, s_address, &waddr) < 0)
        DECLINE();
    mm = lean_getattr(window, s_mm);
    vmas = mm ? lean_getattr(mm, s_vmas) : NULL;
    if (!vmas || !PyList_Check(vmas) || PyList_GET_SIZE(vmas) != 1)
        DECLINE();
    vma = PyList_GET_ITEM(vmas, 0);
    Py_INCREF(vma);
    if (attr_ll(vma, s_start, &vstart) < 0 || attr_ll(vma, s_end, &vend) < 0 ||
        attr_ll(vma, s_prot, &vprot) < 0)
        DECLINE();
    if (vstart != waddr || vend < waddr + (npages << PAGE_SHIFT))
        DECLINE();
    long long vpn0 = (waddr + (long long)off) >> PAGE_SHIFT;
    int slot0 = (int)(vpn0 & (CHUNK - 1));
    if (slot0 + n > CHUNK)
        DECLINE(); /* across two page-table chunks */
    pt = lean_getattr(vma, s_pt);
    chunks = pt ? lean_getattr(pt, s_chunks) : NULL;
    if (!chunks || !PyDict_Check(chunks))
        DECLINE();
    {
        PyObject *ck = PyLong_FromLongLong(vpn0 >> CHUNK_SHIFT);
        if (!ck)
            DECLINE();
        PyObject *c = PyDict_GetItemWithError(chunks, ck);
        Py_DECREF(ck);
        if (!c)
            DECLINE(); /* no entry: a fault */
        if (load_chunk(c, &cv) < 0)
            DECLINE();
    }
    uint8_t *cbits = cv.bits.buf;
    const uint8_t *cprot = cv.prot.buf;
    int64_t *cframe = cv.frame.buf;
    int64_t *cpgoff_r = cv.pgoff.buf;
    mapping = lean_getattr(vma, s_mapping);
    arena = mapping ? lean_getattr(mapping, s_arena) : NULL;
    long long fps;
    if (!arena || attr_ll(arena, s_fps, &fps) < 0 || fps <= 0)
        DECLINE();
    tmp = lean_getattr(arena, s_replaying);
    if (!tmp || PyObject_IsTrue(tmp) != 0)
        DECLINE();
    Py_CLEAR(tmp);
    addrs = lean_getattr(arena, s_addrs);
    if (!addrs || !PyList_Check(addrs))
        DECLINE();
    /* what a read fault needs, looked up once */
    long long vflags, msize, nshared, eof_pages, vpgoff;
    if (attr_ll(vma, s_flags, &vflags) < 0 || attr_ll(mapping, s_size, &msize) < 0 ||
        attr_ll(arena, s_nshared, &nshared) < 0 || attr_ll(vma, s_pgoff, &vpgoff) < 0)
        DECLINE();
    eof_pages = (msize + PAGE_SIZE - 1) >> PAGE_SHIFT;
    int can_fault = (vflags & (VM_NONLINEAR | VM_CAN_NONLINEAR)) ==
                        (VM_NONLINEAR | VM_CAN_NONLINEAR) && nshared == 0;
    if (can_fault && (vflags & (VM_WRITE | VM_SHARED)) == (VM_WRITE | VM_SHARED)) {
        /* vma_wants_writenotify: then the fault's PTE stays read-only -- Python's */
        tmp = lean_getattr(mapping, s_page_mkwrite);
        can_fault = tmp == Py_None;
        Py_CLEAR(tmp);
        tmp = can_fault ? lean_getattr(mapping, s_write_notify) : NULL;
        can_fault = can_fault && tmp && PyObject_IsTrue(tmp) == 0;
        Py_CLEAR(tmp);
        PyErr_Clear();
    }
    if (can_fault) {
        pages = lean_getattr(mapping, s_pages);
        pframes_d = pages ? lean_getattr(pages, s_frames_d) : NULL;
        pflags_d = pages ? lean_getattr(pages, s_pflags_d) : NULL;
        fstats = lean_fstats(mapping, s_fstats);
        mmstats = lean_getattr(mm, s_stats);
        if (!pframes_d || !pflags_d || !PyDict_Check(pframes_d) || !PyDict_Check(pflags_d) ||
            !fstats || !mmstats)
            DECLINE();
    }
    struct iovec iov[MAXW + 1];
    unsigned char hdr[16];
    iov[0].iov_base = hdr;
    iov[0].iov_len = sizeof hdr;
    uint64_t end = off + size;
    for (int k = 0; k < n; k++) {
        int b = cbits[slot0 + k];
        long long eff = (b & PTE_OWNPROT) ? cprot[slot0 + k] : vprot;
        if (!(eff & (PROT_READ_ | PROT_WRITE_ | PROT_EXEC_)))
            DECLINE(); /* SIGSEGV: EACCES, Python's */
        long long frame = cframe[slot0 + k];
        if (!(b & PTE_PRESENT)) {
            /* handle_mm_fault -> do_(non)linear_fault -> fault(): a read fault of a file
             * or none PTE (EOF: SIGBUS, Python's) */
            if (!can_fault || (b & PTE_ANON) || (b && !(b & PTE_FILE)))
                DECLINE();
            /* a file PTE: its pgoff (do_nonlinear_fault); a none PTE: the linear one
             * (do_linear_fault, which installs that pgoff) */
            long long pg = b ? cpgoff_r[slot0 + k]
                             : vpn0 + k - (vstart >> PAGE_SHIFT) + vpgoff;
            fnone[nf] = b == 0;
            if (pg < 0 || pg >= eof_pages)
                DECLINE();
            PyObject *ck = PyLong_FromLongLong(pg >> CHUNK_SHIFT);
            if (!ck)
                DECLINE();
            PyObject *fa = PyDict_GetItemWithError(pframes_d, ck);
            PyObject *fl = fa ? PyDict_GetItemWithError(pflags_d, ck) : NULL;
            Py_DECREF(ck);
            if (PyErr_Occurred())
                DECLINE();
            fpflag[nf] = NULL;
            frame = -1;
            if (fa && fl) {
                if (get_array_obj(fa, CHUNK, 8, &pcv[npcv]) < 0)
                    DECLINE();
                npcv++;
                if (get_array_obj(fl, CHUNK, 1, &pcv[npcv]) < 0)
                    DECLINE();
                npcv++;
                frame = ((int64_t *)pcv[npcv - 2].buf)[pg & (CHUNK - 1)];
                if (frame == 0)
                    DECLINE();
                if (frame > 0)
                    fpflag[nf] = (uint8_t *)pcv[npcv - 1].buf + (pg & (CHUNK - 1));
            }
            if (frame < 0) { /* a hole: the fault allocates it (phase 2) */
                if (pg_seen(fpg, nf, pg))
                    DECLINE(); /* the same hole twice in one READ: Python */
                nholes++;
            }
            fk[nf] = k;
            fframe[nf] = frame;
            fpg[nf] = pg;
            /* _install_bits of a read fault: writable when shared, allowed, and no
             * write-notify (checked above) or frame sharing (nshared 0) */
            fbits[nf] = (uint8_t)(PTE_PRESENT | (b & PTE_OWNPROT) |
                                  ((vflags & VM_SHARED) && (eff & PROT_WRITE_) ? PTE_WRITE : 0));
            nf++;
            if (frame < 0)
                continue; /* its address once allocated */
        }
        if (frame < 0)
            DECLINE();
        long long seg = frame / fps, idx = frame % fps;
        if (seg >= PyList_GET_SIZE(addrs))
            DECLINE();
        unsigned long long base = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(addrs, seg));
        if (base == (unsigned long long)-1 && PyErr_Occurred())
            DECLINE();
        uint64_t a = (uint64_t)(lo + k) << PAGE_SHIFT;
        uint64_t from = off > a ? off : a, to = end < a + PAGE_SIZE ? end : a + PAGE_SIZE;
        iov[k + 1].iov_base = (unsigned char *)(uintptr_t)base + ((size_t)idx << PAGE_SHIFT) +
                              (from - a);
        iov[k + 1].iov_len = (size_t)(to - from);
    }
    long long oino = 0; /* the object's inode: its attributes change if a hole is allocated */
    if (nholes) {
        /* decline unless every hole fits the size= budget */
        if (holes_fit(mapping, &budget, nholes) < 0)
            DECLINE();
        tmp = lean_getattr(ws, s_obj);
        if (!tmp || attr_ll(tmp, s_ino, &oino) < 0)
            DECLINE();
        Py_CLEAR(tmp);
    }
    cached = lean_getattr(ws, s_cached);
    pending = lean_getattr(ws, s_pending);
    pushed = lean_getattr(ws, s_pushed);
    tstats = lean_getattr(e->table, s_stats);
    fsops = lean_getattr(e->fs, s_ops);
    if (!cached || !pending || !pushed || !PySet_Check(cached) || !PyDict_Check(pending) ||
        !PySet_Check(pushed) || !tstats || !PyDict_Check(tstats) || !fsops ||
        !PyDict_Check(fsops))
        DECLINE();
    for (int k = 0; k < n; k++)
        if (!(keys[k] = PyLong_FromLongLong(lo + k)))
            DECLINE();

    /* ---- apply, in the Python path's order ---- */
    if (incr_item(fsops, s_k_read, 1) < 0) /* @counted FileOps.read */
        goto fail;
    for (int q = 0; q < nf; q++) { /* the read faults, page by page as Mm.views */
        int hole = fframe[q] < 0;
        if (hole) { /* fault()'s one-hole path: charge, alloc1, insert1 */
            fframe[q] = fault_hole(budget, arena, pages, fpg[q], PG_UPTODATE, "winread");
            if (fframe[q] < 0)
                goto fail;
        } else if (!(*fpflag[q] & PG_UPTODATE)) {
            if (incr_attr(pages, s_gen, 1) < 0)
                goto fail;
            *fpflag[q] |= PG_UPTODATE;
        }
        PyObject *fsl[2] = {e->fault_stats, fstats};
        for (int z = 0; z < 2; z++)
            if (incr_attr(fsl[z], s_faults, 1) < 0 || incr_attr(fsl[z], s_rd, 1) < 0 ||
                incr_attr(fsl[z], s_via_vma, 1) < 0 ||
                incr_attr(fsl[z], hole ? s_major : s_minor, 1) < 0 ||
                incr_attr(fsl[z], s_pages_n, 1) < 0 ||
                (hole && incr_attr(fsl[z], s_pages_allocated, 1) < 0))
                goto fail;
        int slot = slot0 + fk[q];
        cbits[slot] = fbits[q]; /* set_present: frame, pgoff, the same prot */
        cframe[slot] = fframe[q];
        if (fnone[q])
            cpgoff_r[slot] = fpg[q];
        if (incr_attr(mmstats, hole ? s_major : s_minor, 1) < 0)
            goto fail;
        if (hole) { /* the new frame's address (the arena may have grown) */
            unsigned char *fa = new_frame_addr(arena, &addrs, fframe[q], fps, "winread");
            if (!fa)
                goto fail;
            int k = fk[q];
            uint64_t a = (uint64_t)(lo + k) << PAGE_SHIFT;
            uint64_t from = off > a ? off : a, to = end < a + PAGE_SIZE ? end : a + PAGE_SIZE;
            iov[k + 1].iov_base = fa + (from - a);
            iov[k + 1].iov_len = (size_t)(to - from);
        }
    }
    for (int k = 0; k < n; k++) {
        if (PyDict_DelItem(pending, keys[k]) < 0) {
            if (!PyErr_ExceptionMatches(PyExc_KeyError))
                goto fail;
            PyErr_Clear();
        }
        if (PySet_Discard(pushed, keys[k]) < 0)
            goto fail;
    }
    for (int k = 0; k < n; k++)
        if (PySet_Add(cached, keys[k]) < 0)
            goto fail;
    if (incr_item(tstats, s_k_reads, 1) < 0 || incr_item(tstats, s_k_read_bytes, size) < 0)
        goto fail;
    tmp = PyObject_CallMethodOneArg(e->fs, s_touch, inode);
    if (!tmp)
        goto fail;
    Py_CLEAR(tmp);
    put_u32(hdr, 16 + size);
    put_u32(hdr + 4, 0);
    put_u64(hdr + 8, unique);
    {
        ssize_t r;
        int aerr = 0;
        if (nholes) {
            /* the fault allocated a hole: the object's st_blocks changed.  WindowIO.read
             * queues InvalInode(obj, -1, 0), which the session writes from the reader
             * before the reply (Session._attrs_inline): an attribute-only INVAL locks no
             * page, so it cannot wait for this READ's pages, and the READ's reply never
             * waits behind the writer thread's queue */
            unsigned char note[40];
            put_u32(note, 40);
            put_u32(note + 4, NOTIFY_INVAL_INODE);
            put_u64(note + 8, 0);
            put_u64(note + 16, (uint64_t)oino);
            put_u64(note + 24, (uint64_t)-1);
            put_u64(note + 32, 0);
            do {
                r = write(fd, note, sizeof note);
            } while (r < 0 && errno == EINTR);
            aerr = r < 0 && errno != ENOENT; /* ENOENT: the kernel forgot the object */
        }
        do {
            r = writev(fd, iov, n + 1);
        } while (r < 0 && errno == EINTR);
        int err = r < 0 ? errno : 0;
        pthread_mutex_lock(&e->mu);
        e->reads++;
        if (nholes)
            e->read_attr_invals++;
        if (err)
            e->reply_errors++;
        if (aerr)
            e->write_errors++;
        pthread_mutex_unlock(&e->mu);
        result = PyLong_FromLong(err);
    }
    goto out;

fail:
    result = NULL;
    goto out;
decline:
    if (PyErr_Occurred())
        PyErr_Clear();
    pthread_mutex_lock(&e->mu);
    e->read_declined++;
    pthread_mutex_unlock(&e->mu);
decline_quiet:
    if (PyErr_Occurred())
        PyErr_Clear();
    PyBuffer_Release(&mb); /* a no-op once released */
    Py_INCREF(Py_None);
    result = Py_None;
out:
    release_chunk(&cv);
    for (int q = 0; q < npcv; q++)
        PyBuffer_Release(&pcv[q]);
    for (int k = 0; k < MAXW; k++)
        Py_XDECREF(keys[k]);
    Py_XDECREF(wins);
    Py_XDECREF(ikey);
    Py_XDECREF(ws);
    Py_XDECREF(inodes);
    Py_XDECREF(inode);
    Py_XDECREF(handles);
    Py_XDECREF(window);
    Py_XDECREF(mm);
    Py_XDECREF(vmas);
    Py_XDECREF(vma);
    Py_XDECREF(pt);
    Py_XDECREF(chunks);
    Py_XDECREF(mapping);
    Py_XDECREF(arena);
    Py_XDECREF(addrs);
    Py_XDECREF(tmp);
    Py_XDECREF(cached);
    Py_XDECREF(pending);
    Py_XDECREF(pushed);
    Py_XDECREF(tstats);
    Py_XDECREF(fsops);
    Py_XDECREF(pages);
    Py_XDECREF(pframes_d);
    Py_XDECREF(pflags_d);
    Py_XDECREF(fstats);
    Py_XDECREF(mmstats);
    Py_XDECREF(budget);
    return result;
}
