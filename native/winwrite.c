/*
 * mount.server._winfast, third part: a WRITE of window pages through the page
 * table, in C -- write(2) of a window (pwrite) and a write-back with nothing
 * pending (msync/fsync of a page stored into through a mapping).
 *
 * Why (docs/performance.md, "Window WRITEs and READs in C"): uml_physmem stores through
 * pwrite and through mmap + msync, vlm_window through pwrite; each such WRITE
 * cost the daemon 300-900 us in Python (parse, FileOps.write, WindowIO.write:
 * the store fault, _stored's search for other cached views of the written object
 * pages, the bookkeeping), most of those tools' daemon time.
 *
 * What it takes, from winlaunder.c's Engine.write (which checked the message, that
 * the inode is a window and the handle is of it): 1 to MAXW pages inside one
 * page-table chunk of a window of one VMA, every page with a present, writable
 * PTE whose protection allows the store (Mm._resolve's no-fault case: only
 * PTE_DIRTY is set) -- or one page that is not present, whose store fault
 * (handle_mm_fault -> fault(WRITE): a resident page or a hole allocated) is
 * checked to succeed and then made here --, write flags 0 (write(2), not on an
 * O_APPEND handle) or FUSE_WRITE_CACHE with no page pending.  What _stored must
 * invalidate is invalidated here too: the written object pages the kernel caches
 * through the object's inode (_inval_object) and other windows' cached pages
 * showing them (object_changed / the few-pages path), one INVAL_INODE per run
 * queued on the writer thread after the reply; an alias in the writer's own
 * window is Python's.  It then does what FileOps.write -> WindowIO.write ->
 * Mm.views + _stored does, on the same objects, in that order, and writes the
 * reply (docs/decisions.md 24 and "Window stores that invalidate other views,
 * and store faults, in C").  Otherwise it returns None; what it changed before (the session's
 * cancel of queued stores for write(2), _settle) the Python path repeats with the
 * same result.
 */
#include "winfast.h"

#include <errno.h>
#include <fcntl.h>

#define MAXWINS 64 /* windows of one object the engine looks through; more: Python */

static PyObject *s_wins, *s_npages, *s_cached, *s_pending, *s_pushed, *s_obj, *s_mapping,
    *s_objs, *s_by_mm, *s_rmap, *s_i_mmap, *s_nonlinear, *s_mm, *s_vmas, *s_start, *s_end,
    *s_pgoff, *s_prot, *s_pt, *s_chunks, *s_bits, *s_window, *s_address, *s_arena,
    *s_fps, *s_addrs, *s_replaying, *s_lookups, *s_stats, *s_ops, *s_now, *s_mtime, *s_ctime,
    *s_flags, *s_ino, *s_k_write, *s_k_writes, *s_k_write_bytes, *s_k_inval_events,
    *s_k_inval_pages, *s_page_mkwrite, *s_size, *s_nshared, *s_pages, *s_frames, *s_pflags,
    *s_gen, *s_fstats, *s_faults, *s_via_vma, *s_major, *s_minor, *s_pages_allocated;

#define INTERN(var, text) \
    do { if (!((var) = PyUnicode_InternFromString(text))) return -1; } while (0)

int winwrite_init(void)
{
    INTERN(s_wins, "wins");
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
    INTERN(s_vmas, "_vmas");
    INTERN(s_start, "start");
    INTERN(s_end, "end");
    INTERN(s_pgoff, "pgoff");
    INTERN(s_prot, "prot");
    INTERN(s_pt, "pt");
    INTERN(s_chunks, "_chunks");
    INTERN(s_bits, "bits");
    INTERN(s_window, "window");
    INTERN(s_address, "address");
    INTERN(s_arena, "arena");
    INTERN(s_fps, "fps");
    INTERN(s_addrs, "_addrs");
    INTERN(s_replaying, "replaying");
    INTERN(s_lookups, "lookups");
    INTERN(s_stats, "stats");
    INTERN(s_ops, "_ops");
    INTERN(s_now, "_now");
    INTERN(s_mtime, "mtime_ns");
    INTERN(s_ctime, "ctime_ns");
    INTERN(s_flags, "flags");
    INTERN(s_ino, "ino");
    INTERN(s_k_write, "write");
    INTERN(s_k_writes, "writes");
    INTERN(s_k_write_bytes, "write_bytes");
    INTERN(s_k_inval_events, "inval_events");
    INTERN(s_k_inval_pages, "inval_pages");
    INTERN(s_page_mkwrite, "page_mkwrite");
    INTERN(s_size, "size");
    INTERN(s_nshared, "nshared");
    INTERN(s_pages, "pages");
    INTERN(s_frames, "_frames");
    INTERN(s_pflags, "_flags");
    INTERN(s_gen, "gen");
    INTERN(s_fstats, "fstats");
    INTERN(s_faults, "faults");
    INTERN(s_via_vma, "via_vma");
    INTERN(s_major, "major");
    INTERN(s_minor, "minor");
    INTERN(s_pages_allocated, "pages_allocated");
    return winviews_init();
}

/* The one VMA of a window and the views of the page-table chunk holding vpn; 0 ok,
 * -1 decline.  A window split by MPROTECT_VMA (several VMAs) is Python's. */
typedef struct {
    PyObject *window, *mm, *vma, *pt, *chunks;
    long long waddr, vstart, vend, vpgoff, vprot;
} winview_t;

static void winview_clear(winview_t *v)
{
    Py_CLEAR(v->window);
    Py_CLEAR(v->mm);
    Py_CLEAR(v->vma);
    Py_CLEAR(v->pt);
    Py_CLEAR(v->chunks);
}

static int winview(PyObject *ws, winview_t *v)
{
    PyObject *vmas = NULL;
    v->window = lean_getattr(ws, s_window);
    if (!v->window || attr_ll(v->window, s_address, &v->waddr) < 0)
        goto bad;
    v->mm = lean_getattr(v->window, s_mm);
    if (!v->mm)
        goto bad;
    vmas = lean_getattr(v->mm, s_vmas);
    if (!vmas || !PyList_Check(vmas) || PyList_GET_SIZE(vmas) != 1)
        goto bad;
    v->vma = PyList_GET_ITEM(vmas, 0);
    Py_INCREF(v->vma);
    Py_CLEAR(vmas);
    if (attr_ll(v->vma, s_start, &v->vstart) < 0 || attr_ll(v->vma, s_end, &v->vend) < 0 ||
        attr_ll(v->vma, s_pgoff, &v->vpgoff) < 0 || attr_ll(v->vma, s_prot, &v->vprot) < 0)
        goto bad;
    if (v->vstart != v->waddr || v->vend <= v->vstart || (v->vstart & (PAGE_SIZE - 1)))
        goto bad;
    v->pt = lean_getattr(v->vma, s_pt);
    if (!v->pt)
        goto bad;
    v->chunks = lean_getattr(v->pt, s_chunks);
    if (!v->chunks || !PyDict_Check(v->chunks))
        goto bad;
    return 0;
bad:
    PyErr_Clear();
    Py_XDECREF(vmas);
    winview_clear(v);
    return -1;
}

/* What window page i of (the one-VMA window) v shows: _page_state's pgoff; -1 on
 * error (decline). */
static long long shown_pgoff(winview_t *v, long long i)
{
    long long a = v->waddr + (i << PAGE_SHIFT);
    if (a < v->vstart || a >= v->vend)
        return -1;
    long long vpn = a >> PAGE_SHIFT;
    PyObject *k = PyLong_FromLongLong(vpn >> CHUNK_SHIFT);
    if (!k)
        return -1;
    PyObject *c = PyDict_GetItemWithError(v->chunks, k);
    Py_DECREF(k);
    int b = 0;
    long long pg = 0;
    if (c) {
        Py_buffer bv, pv;
        if (get_array(c, s_bits, CHUNK, 1, &bv) < 0)
            return -1;
        if (get_array(c, s_pgoff, CHUNK, 8, &pv) < 0) {
            PyBuffer_Release(&bv);
            return -1;
        }
        b = ((const uint8_t *)bv.buf)[vpn & (CHUNK - 1)];
        pg = ((const int64_t *)pv.buf)[vpn & (CHUNK - 1)];
        PyBuffer_Release(&bv);
        PyBuffer_Release(&pv);
    } else if (PyErr_Occurred()) {
        return -1;
    }
    if (b & (PTE_PRESENT | PTE_FILE))
        return pg;
    return vpn - (v->vstart >> PAGE_SHIFT) + v->vpgoff;
}

/* the session's _cancel_stores for a write(2) of pages [first, last] of ino: the
 * engine's queued stores and the Python notifier's ({(ino, page): gen}) */
int cancel_stores(Engine *e, uint64_t ino, long long first, long long last)
{
    pthread_mutex_lock(&e->mu);
    for (batch_t *b = e->head; b; b = b->next)
        if (b->ino == ino)
            for (int k = 0; k < b->nmsg; k++)
                if (b->state[k] == ST_QUEUED && (long long)b->page[k] >= first &&
                    (long long)b->page[k] <= last)
                    b->state[k] = ST_CANCELLED;
    pthread_mutex_unlock(&e->mu);
    if (e->py_stores && PyDict_Check(e->py_stores) && PyDict_GET_SIZE(e->py_stores)) {
        for (long long p = first; p <= last; p++) {
            PyObject *key = Py_BuildValue("(KL)", (unsigned long long)ino, p);
            if (!key)
                return -1;
            int r = PyDict_DelItem(e->py_stores, key);
            Py_DECREF(key);
            if (r < 0) {
                if (!PyErr_ExceptionMatches(PyExc_KeyError))
                    return -1;
                PyErr_Clear();
            }
        }
    }
    return 0;
}

static int in_list_ll(const long long *v, int n, long long x)
{
    for (int k = 0; k < n; k++)
        if (v[k] == x)
            return 1;
    return 0;
}

#define DECLINE() do { e->last_wstore_decline = __LINE__; goto decline; } while (0)

PyObject *winwrite_store(wreq_t *r)
{
    Engine *e = r->e;
    PyObject *ws = r->ws;
    PyObject *result = NULL, *pushed = NULL, *pending = NULL, *cached = NULL, *keys[MAXW + 1] = {0};
    PyObject *obj = NULL, *mapping = NULL, *arena = NULL, *addrs = NULL, *tmp = NULL,
             *objs = NULL, *ostate = NULL, *ocached = NULL, *owins = NULL, *wins = NULL,
             *rmap = NULL, *rstats = NULL, *tstats = NULL, *fsops = NULL, *now = NULL;
    winview_t me = {0};
    batch_t *ob = NULL; /* the object's INVALs (_inval_object), queued after the reply */
    PyObject *pages = NULL, *fstats = NULL, *mmstats = NULL, *budget = NULL;
    Py_buffer pfr = {0}, pfl = {0}; /* the page cache's chunk of a faulted page */
    int have_pc = 0;
    long long ohit[MAXW]; /* the written object pages the kernel caches, ascending */
    PyObject *okeys[MAXW] = {0};
    int nohit = 0, norun = 0;
    struct { /* other windows' cached views of the written pages (_drop_cached) */
        PyObject *ws, *ino_cached, *pushed, *pending;
        long long ino, pages[MAXHIT];
        int n;
    } hv[MAXHV];
    int nhv = 0, nhvrun = 0;
    memset(hv, 0, sizeof hv);
    chunk_views cv = {0};

    long long npages;
    if (attr_ll(ws, s_npages, &npages) < 0)
        DECLINE();
    uint64_t end = r->off + r->size;
    if (end > (uint64_t)npages << PAGE_SHIFT)
        DECLINE(); /* past the window's end: Python clips it */
    long long lo = (long long)(r->off >> PAGE_SHIFT), hi = (long long)((end - 1) >> PAGE_SHIFT) + 1;
    int n = (int)(hi - lo);
    if (n < 1 || n > MAXW)
        DECLINE();
    if (r->wflags == 0) {
        long long hflags;
        if (attr_ll(r->handle, s_flags, &hflags) < 0 || (hflags & O_APPEND))
            DECLINE(); /* appends at the window's size: Python */
        if (cancel_stores(e, r->nodeid, lo, hi - 1) < 0)
            DECLINE();
    }
    pushed = lean_getattr(ws, s_pushed);
    pending = lean_getattr(ws, s_pending);
    cached = lean_getattr(ws, s_cached);
    if (!pushed || !pending || !cached || !PySet_Check(pushed) || !PyDict_Check(pending) ||
        !PySet_Check(cached))
        DECLINE();
    for (int k = 0; k < n; k++) {
        keys[k] = PyLong_FromLongLong(lo + k);
        if (!keys[k])
            DECLINE();
        if (PySet_GET_SIZE(pushed) &&
            settle(e, r->nodeid, (uint64_t)(lo + k), keys[k], pushed, pending) < 0)
            DECLINE();
        if (r->wflags) { /* a write-back of a page still pending: _write_back_pending */
            int has = PyDict_Contains(pending, keys[k]);
            if (has != 0)
                DECLINE();
        }
    }

    /* ---- phase 1: the store fault's no-fault case on every page ---- */
    if (winview(ws, &me) < 0)
        DECLINE();
    long long vpn0 = (me.waddr + (long long)r->off) >> PAGE_SHIFT;
    int slot0 = (int)(vpn0 & (CHUNK - 1));
    if (slot0 + n > CHUNK)
        DECLINE(); /* across two page-table chunks */
    {
        PyObject *ck = PyLong_FromLongLong(vpn0 >> CHUNK_SHIFT);
        if (!ck)
            DECLINE();
        PyObject *c = PyDict_GetItemWithError(me.chunks, ck);
        Py_DECREF(ck);
        if (!c)
            DECLINE();
        if (load_chunk(c, &cv) < 0)
            DECLINE();
    }
    uint8_t *cbits = cv.bits.buf;
    const uint8_t *cprot = cv.prot.buf;
    int64_t *cframe = cv.frame.buf, *cpgoff = cv.pgoff.buf;
    long long pgs[MAXW], frames[MAXW];
    int wfault = 0, wfault_bits = 0; /* one page, not present: the store faults it in */
    for (int k = 0; k < n; k++) {
        int b = cbits[slot0 + k];
        long long eff = (b & PTE_OWNPROT) ? cprot[slot0 + k] : me.vprot;
        if (!(b & PTE_PRESENT)) {
            /* handle_mm_fault(write) of a file or none PTE: do_nonlinear_fault /
             * do_linear_fault -> fault(WRITE) of one page (checked below), one page
             * only (a second page could fault the same object page) */
            if (n != 1 || !e->wstore_fault || (b & ~(PTE_FILE | PTE_OWNPROT)))
                DECLINE();
            if (!(eff & PROT_WRITE_))
                DECLINE(); /* SIGSEGV: Python's */
            wfault = 1;
            wfault_bits = b;
            frames[k] = -1;
            pgs[k] = (b & PTE_FILE) ? cpgoff[slot0 + k]
                                    : me.vpgoff + (vpn0 + k - (me.vstart >> PAGE_SHIFT));
            if (pgs[k] < 0)
                DECLINE();
            continue;
        }
        if (!(b & PTE_WRITE) || (b & PTE_ANON) || !(eff & PROT_WRITE_))
            DECLINE(); /* a write-protect fault or a refusal: Python's */
        frames[k] = cframe[slot0 + k];
        pgs[k] = cpgoff[slot0 + k];
        if (frames[k] <= 0 || pgs[k] < 0)
            DECLINE();
    }
    mapping = lean_getattr(me.vma, s_mapping);
    arena = mapping ? lean_getattr(mapping, s_arena) : NULL;
    long long fps;
    if (!arena || attr_ll(arena, s_fps, &fps) < 0 || fps <= 0)
        DECLINE();
    tmp = lean_getattr(arena, s_replaying);
    if (!tmp || PyObject_IsTrue(tmp) != 0)
        DECLINE();
    Py_CLEAR(tmp);
    int fhole = 0, fsetflags = 0;
    if (wfault) { /* the fault's checks: it must succeed, and do what Python's does */
        long long vflags, msize, nshared;
        if (attr_ll(me.vma, s_flags, &vflags) < 0 || !(vflags & VM_SHARED))
            DECLINE(); /* a private write: COW, Python's */
        if ((wfault_bits & PTE_FILE) && (vflags & (VM_NONLINEAR | VM_CAN_NONLINEAR)) !=
                                            (VM_NONLINEAR | VM_CAN_NONLINEAR))
            DECLINE();
        tmp = lean_getattr(mapping, s_page_mkwrite);
        if (!tmp || tmp != Py_None)
            DECLINE(); /* _page_mkwrite's hook */
        Py_CLEAR(tmp);
        if (attr_ll(mapping, s_size, &msize) < 0 ||
            pgs[0] >= (msize + PAGE_SIZE - 1) >> PAGE_SHIFT)
            DECLINE(); /* beyond EOF: SIGBUS, Python's */
        if (attr_ll(arena, s_nshared, &nshared) < 0 || nshared != 0)
            DECLINE(); /* copy_file_range sharing: break_shares, Python's */
        pages = lean_getattr(mapping, s_pages);
        fstats = lean_fstats(mapping, s_fstats);
        mmstats = lean_getattr(me.mm, s_stats);
        if (!pages || !fstats || !mmstats)
            DECLINE();
        PyObject *fr_d = lean_getattr(pages, s_frames), *fl_d = lean_getattr(pages, s_pflags);
        int bad = !fr_d || !fl_d || !PyDict_Check(fr_d) || !PyDict_Check(fl_d);
        PyObject *fa = NULL, *fl = NULL;
        if (!bad) {
            PyObject *pkey = PyLong_FromLongLong(pgs[0] >> CHUNK_SHIFT);
            bad = !pkey;
            fa = pkey ? PyDict_GetItemWithError(fr_d, pkey) : NULL;
            fl = fa ? PyDict_GetItemWithError(fl_d, pkey) : NULL;
            Py_XDECREF(pkey);
            bad = bad || PyErr_Occurred() || (fa && !fl);
        }
        if (!bad && fa) {
            if (get_array_obj(fa, CHUNK, 8, &pfr) < 0)
                bad = 1;
            else if (get_array_obj(fl, CHUNK, 1, &pfl) < 0) {
                PyBuffer_Release(&pfr);
                bad = 1;
            } else {
                have_pc = 1;
            }
        }
        Py_XDECREF(fr_d);
        Py_XDECREF(fl_d);
        if (bad)
            DECLINE();
        int ps = (int)(pgs[0] & (CHUNK - 1));
        frames[0] = have_pc ? ((int64_t *)pfr.buf)[ps] : -1;
        if (frames[0] == 0)
            DECLINE();
        fhole = frames[0] < 0;
        if (fhole) {
            if (holes_fit(mapping, &budget, 1) < 0)
                DECLINE(); /* ENOSPC: SIGBUS, Python's */
        } else {
            fsetflags = (((uint8_t *)pfl.buf)[ps] & (PG_UPTODATE | PG_DIRTY)) !=
                        (PG_UPTODATE | PG_DIRTY);
        }
    }
    addrs = lean_getattr(arena, s_addrs);
    if (!addrs || !PyList_Check(addrs))
        DECLINE();
    unsigned char *dst[MAXW];
    for (int k = 0; k < n; k++) {
        if (frames[k] < 0) { /* a hole the fault allocates: its address in phase 2 */
            dst[k] = NULL;
            continue;
        }
        long long seg = frames[k] / fps, idx = frames[k] % fps;
        if (seg >= PyList_GET_SIZE(addrs))
            DECLINE();
        unsigned long long base = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(addrs, seg));
        if (base == (unsigned long long)-1 && PyErr_Occurred())
            DECLINE();
        dst[k] = (unsigned char *)(uintptr_t)base + ((size_t)idx << PAGE_SHIFT);
    }

    /* ---- _stored: nothing may need invalidating ---- */
    long long shown[MAXW];
    int nshown = 0;
    for (int k = 0; k < n; k++) /* distinct, sorted (insertion: n <= 16) */
        if (!in_list_ll(shown, nshown, pgs[k])) {
            int j = nshown++;
            while (j > 0 && shown[j - 1] > pgs[k]) {
                shown[j] = shown[j - 1];
                j--;
            }
            shown[j] = pgs[k];
        }
    obj = lean_getattr(ws, s_obj);
    long long oino;
    if (!obj || attr_ll(obj, s_ino, &oino) < 0)
        DECLINE();
    objs = lean_getattr(e->table, s_objs);
    if (!objs || !PyDict_Check(objs))
        DECLINE();
    {
        PyObject *ok = PyLong_FromLongLong(oino);
        if (!ok)
            DECLINE();
        ostate = PyDict_GetItemWithError(objs, ok);
        Py_DECREF(ok);
        if (!ostate)
            DECLINE();
        Py_INCREF(ostate);
    }
    ocached = lean_getattr(ostate, s_cached);
    owins = lean_getattr(ostate, s_wins);
    wins = lean_getattr(e->table, s_wins);
    if (!ocached || !PySet_Check(ocached) || !owins || !PyAnySet_Check(owins) || !wins ||
        !PyDict_Check(wins))
        DECLINE();
    /* _inval_object: the written object pages the kernel caches through the object's
     * own inode (a pread of it) are dropped from ostate.cached and invalidated, one
     * INVAL per run of them in ascending order (_runs), queued after the reply as the
     * session queues a WRITE's notifications of another inode (docs/decisions.md,
     * "Window stores that invalidate other views, and store faults, in C") */
    if (PySet_GET_SIZE(ocached))
        for (int q = 0; q < nshown; q++) {
            PyObject *pk = PyLong_FromLongLong(shown[q]);
            if (!pk)
                DECLINE();
            int in = PySet_Contains(ocached, pk);
            if (in < 0 || (in && !e->wstore_inval)) {
                Py_DECREF(pk);
                DECLINE();
            }
            if (in) {
                ohit[nohit] = shown[q];
                okeys[nohit++] = pk; /* released at out */
            } else {
                Py_DECREF(pk);
            }
        }
    for (int q = 0; q < nohit; q++)
        if (q == 0 || ohit[q] != ohit[q - 1] + 1)
            norun++;
    /* the windows of the object and how many pages the kernel may cache of them */
    Py_ssize_t total = 0;
    PyObject *wlist[MAXWINS];
    int nw = 0;
    if (PySet_GET_SIZE(owins) > MAXWINS)
        DECLINE();
    {
        PyObject *it = PyObject_GetIter(owins), *wi;
        if (!it)
            DECLINE();
        while ((wi = PyIter_Next(it))) {
            PyObject *w = PyDict_GetItemWithError(wins, wi); /* borrowed: wins holds it */
            Py_DECREF(wi);
            if (!w || nw >= MAXWINS) {
                Py_DECREF(it);
                DECLINE();
            }
            wlist[nw++] = w;
            PyObject *wc = lean_getattr(w, s_cached);
            if (!wc || !PySet_Check(wc)) {
                Py_XDECREF(wc);
                Py_DECREF(it);
                DECLINE();
            }
            total += PySet_GET_SIZE(wc);
            Py_DECREF(wc);
        }
        Py_DECREF(it);
        if (PyErr_Occurred())
            DECLINE();
    }
    int big = total > 8 * (Py_ssize_t)nshown + 64;
    int nruns = 0;
    if (!big) {
        /* few cached pages: ask each what it shows (aliases in this window included) */
        for (int q = 0; q < nw; q++) {
            PyObject *w = wlist[q];
            PyObject *wc = lean_getattr(w, s_cached);
            if (!wc)
                DECLINE();
            if (PySet_GET_SIZE(wc) == 0) {
                Py_DECREF(wc);
                continue;
            }
            winview_t v = {0};
            if (winview(w, &v) < 0) {
                Py_DECREF(wc);
                DECLINE();
            }
            PyObject *it = PyObject_GetIter(wc), *ci;
            int hit = it ? 0 : -1;
            /* another window's views are invalidated here (_drop_cached, sorted runs);
             * an alias in the writer's own window (its INVAL goes last): Python */
            int mine = w != ws && e->wstore_inval && nhv < MAXHV;
            if (mine)
                hv[nhv].n = 0;
            while (!hit && (ci = PyIter_Next(it))) {
                long long i = PyLong_AsLongLong(ci);
                Py_DECREF(ci);
                if (i == -1 && PyErr_Occurred()) {
                    hit = -1;
                    break;
                }
                if (w == ws && i >= lo && i < hi)
                    continue;
                long long pg = shown_pgoff(&v, i);
                if (pg < 0)
                    hit = -1;
                else if (in_list_ll(shown, nshown, pg)) {
                    if (!mine || hv[nhv].n >= MAXHIT) {
                        hit = 1;
                        break;
                    }
                    int j = hv[nhv].n++;
                    while (j > 0 && hv[nhv].pages[j - 1] > i) {
                        hv[nhv].pages[j] = hv[nhv].pages[j - 1];
                        j--;
                    }
                    hv[nhv].pages[j] = i;
                }
            }
            Py_XDECREF(it);
            if (!hit && mine && hv[nhv].n) {
                Py_INCREF(w);
                hv[nhv++].ws = w;
            }
            winview_clear(&v);
            Py_DECREF(wc);
            if (hit || PyErr_Occurred())
                DECLINE();
        }
    } else {
        /* object_changed per run of the shown pages: the reverse map, scanned in C */
        rmap = lean_getattr(mapping, s_rmap);
        if (!rmap || rmap == Py_None)
            DECLINE();
        tmp = lean_getattr(rmap, s_i_mmap);
        if (!tmp || PyObject_Length(tmp) != 0)
            DECLINE(); /* a linear VMA on the object: Python */
        Py_CLEAR(tmp);
        PyObject *nonlin = lean_getattr(rmap, s_nonlinear);
        PyObject *by_mm = lean_getattr(e->table, s_by_mm);
        int bad = !nonlin || !PyDict_Check(nonlin) || !by_mm || !PyDict_Check(by_mm);
        /* one run of shown pages (one lookup): other windows' cached views of them are
         * invalidated here (_drop_cached); several runs with a cached view: Python */
        int onerun = shown[nshown - 1] - shown[0] == nshown - 1;
        Py_ssize_t pos = 0;
        PyObject *vk, *vma;
        while (!bad && PyDict_Next(nonlin, &pos, &vk, &vma)) {
            if (!e->wstore_inval || !onerun) {
                bad = shown_and_cached(by_mm, vma, shown, nshown, ws, lo, hi) != 0;
                continue;
            }
            PyObject *hw = NULL;
            int nh = 0;
            if (nhv >= MAXHV) {
                bad = 1;
                break;
            }
            bad = cached_showing(by_mm, vma, shown[0], shown[nshown - 1], ws, lo, hi, &hw,
                                 hv[nhv].pages, &nh) != 0;
            if (!bad && nh) {
                hv[nhv].ws = hw;
                hv[nhv++].n = nh;
                if (hw == ws)
                    bad = 1; /* an alias in the writer's own window: its INVAL goes last */
            }
        }
        Py_XDECREF(nonlin);
        Py_XDECREF(by_mm);
        if (bad)
            DECLINE();
        rstats = lean_getattr(rmap, s_stats);
        if (!rstats)
            DECLINE();
        for (int q = 0; q < nshown; q++)
            if (q == 0 || shown[q] != shown[q - 1] + 1)
                nruns++;
    }
    tstats = lean_getattr(e->table, s_stats);
    fsops = lean_getattr(e->fs, s_ops);
    if (!tstats || !PyDict_Check(tstats) || !fsops || !PyDict_Check(fsops))
        DECLINE();
    for (int v = 0; v < nhv; v++) { /* their sets and inode numbers, checked now */
        hv[v].ino_cached = lean_getattr(hv[v].ws, s_cached);
        hv[v].pushed = lean_getattr(hv[v].ws, s_pushed);
        hv[v].pending = lean_getattr(hv[v].ws, s_pending);
        if (!hv[v].ino_cached || !PySet_Check(hv[v].ino_cached) || !hv[v].pushed ||
            !PySet_Check(hv[v].pushed) || !hv[v].pending || !PyDict_Check(hv[v].pending) ||
            attr_ll(hv[v].ws, s_ino, &hv[v].ino) < 0)
            DECLINE();
        for (int q = 0; q < hv[v].n; q++)
            if (q == 0 || hv[v].pages[q] != hv[v].pages[q - 1] + 1)
                nhvrun++;
    }
    /* _inval_object(attrs=allocated): a store fault that allocated a hole changed the
     * object's st_blocks; when none of its pages is invalidated (an INVAL of pages drops
     * the attributes too), one attribute-only INVAL of it (offset -1), in their place */
    int oattr = fhole && nohit == 0;
    if (norun + oattr + nhvrun > MAXMSG)
        DECLINE();
    if (norun + oattr + nhvrun) { /* the INVALs, built before anything changes: the
                           * object's (_inval_object), then each other window's */
        size_t cap = (size_t)(norun + oattr + nhvrun) * 40;
        ob = malloc(sizeof(batch_t) + cap);
        if (!ob)
            DECLINE();
        memset(ob, 0, sizeof(batch_t));
        ob->cap = cap;
        ob->ino = (uint64_t)oino;
        if (oattr) {
            unsigned char *p = ob->buf;
            put_u32(p, 40);
            put_u32(p + 4, NOTIFY_INVAL_INODE);
            put_u64(p + 8, 0);
            put_u64(p + 16, (uint64_t)oino);
            put_u64(p + 24, (uint64_t)-1); /* attributes only (fuse_reverse_inval_inode) */
            put_u64(p + 32, 0);
            ob->off[0] = 0;
            ob->len[ob->nmsg++] = 40;
        }
        for (int q = 0; q < nohit;) {
            int j = q + 1;
            while (j < nohit && ohit[j] == ohit[j - 1] + 1)
                j++;
            unsigned char *p = ob->buf + (size_t)ob->nmsg * 40;
            put_u32(p, 40);
            put_u32(p + 4, NOTIFY_INVAL_INODE);
            put_u64(p + 8, 0);
            put_u64(p + 16, (uint64_t)oino);
            put_u64(p + 24, (uint64_t)ohit[q] << PAGE_SHIFT);
            put_u64(p + 32, (uint64_t)(j - q) << PAGE_SHIFT);
            ob->off[ob->nmsg] = (size_t)ob->nmsg * 40;
            ob->len[ob->nmsg++] = 40;
            q = j;
        }
        for (int v = 0; v < nhv; v++)
            for (int q = 0; q < hv[v].n;) {
                int j = q + 1;
                while (j < hv[v].n && hv[v].pages[j] == hv[v].pages[j - 1] + 1)
                    j++;
                unsigned char *p = ob->buf + (size_t)ob->nmsg * 40;
                put_u32(p, 40);
                put_u32(p + 4, NOTIFY_INVAL_INODE);
                put_u64(p + 8, 0);
                put_u64(p + 16, (uint64_t)hv[v].ino);
                put_u64(p + 24, (uint64_t)hv[v].pages[q] << PAGE_SHIFT);
                put_u64(p + 32, (uint64_t)(j - q) << PAGE_SHIFT);
                ob->off[ob->nmsg] = (size_t)ob->nmsg * 40;
                ob->len[ob->nmsg++] = 40;
                q = j;
            }
    }

    /* ---- phase 2: apply, in the Python path's order ---- */
    if (incr_item(fsops, s_k_write, 1) < 0) /* @counted FileOps.write */
        goto fail;
    if (wfault) { /* _resolve -> handle_mm_fault -> _do_fault: fault(WRITE), the PTE */
        if (fhole) { /* fault()'s one-hole path: charge, alloc1, insert1 */
            frames[0] = fault_hole(budget, arena, pages, pgs[0],
                                   PG_UPTODATE | PG_DIRTY, "winwrite");
            if (frames[0] < 0)
                goto fail;
            dst[0] = new_frame_addr(arena, &addrs, frames[0], fps, "winwrite");
            if (!dst[0])
                goto fail;
        } else if (fsetflags) { /* pages.set_flags: UPTODATE|DIRTY, a new generation */
            ((uint8_t *)pfl.buf)[pgs[0] & (CHUNK - 1)] |= PG_UPTODATE | PG_DIRTY;
            if (incr_attr(pages, s_gen, 1) < 0)
                goto fail;
        }
        PyObject *fsl[2] = {e->fault_stats, fstats};
        for (int q = 0; q < 2; q++) /* _count(WRITE, via_vma, MAJOR/MINOR, 1, hole, 0) */
            if (incr_attr(fsl[q], s_faults, 1) < 0 || incr_attr(fsl[q], s_k_write, 1) < 0 ||
                incr_attr(fsl[q], s_via_vma, 1) < 0 ||
                incr_attr(fsl[q], fhole ? s_major : s_minor, 1) < 0 ||
                incr_attr(fsl[q], s_pages, 1) < 0 ||
                (fhole && incr_attr(fsl[q], s_pages_allocated, 1) < 0))
                goto fail;
        /* set_present(vpn, frame, pgoff, _install_bits(write), prot): prot kept */
        cbits[slot0] = (uint8_t)(PTE_PRESENT | (wfault_bits & PTE_OWNPROT) | PTE_WRITE | PTE_DIRTY);
        cframe[slot0] = frames[0];
        cpgoff[slot0] = pgs[0];
        if (incr_attr(mmstats, fhole ? s_major : s_minor, 1) < 0)
            goto fail;
    }
    {
        size_t done = 0;
        for (int k = 0; k < n; k++) { /* Mm._resolve: a store marks the PTE dirty */
            if (!(cbits[slot0 + k] & PTE_DIRTY))
                cbits[slot0 + k] |= PTE_DIRTY;
            uint64_t a = (uint64_t)(lo + k) << PAGE_SHIFT;
            uint64_t from = r->off > a ? r->off : a;
            uint64_t to = end < a + PAGE_SIZE ? end : a + PAGE_SIZE;
            memcpy(dst[k] + (from - a), r->data + done, (size_t)(to - from));
            done += (size_t)(to - from);
        }
    }
    /* _stored -> _inval_object, before the other views' checks (which found nothing) */
    for (int q = 0; q < nohit; q++)
        if (PySet_Discard(ocached, okeys[q]) < 0)
            goto fail;
    if (norun && (incr_item(tstats, s_k_inval_events, norun) < 0 ||
                  incr_item(tstats, s_k_inval_pages, nohit) < 0))
        goto fail;
    if (big && incr_attr(rstats, s_lookups, nruns) < 0)
        goto fail;
    /* object_changed -> _drop_cached of each other window's cached views: settle the
     * pushed ones, uncache them, one INVAL per run (built above) */
    for (int v = 0; v < nhv; v++) {
        for (int q = 0; q < hv[v].n; q++) {
            PyObject *key = PyLong_FromLongLong(hv[v].pages[q]);
            if (!key)
                goto fail;
            int bad = (PySet_GET_SIZE(hv[v].pushed) &&
                       settle(e, (uint64_t)hv[v].ino, (uint64_t)hv[v].pages[q], key,
                              hv[v].pushed, hv[v].pending) < 0) ||
                      PySet_Discard(hv[v].ino_cached, key) < 0;
            Py_DECREF(key);
            if (bad)
                goto fail;
        }
    }
    if (nhvrun && incr_item(tstats, s_k_inval_events, nhvrun) < 0)
        goto fail;
    for (int v = 0; v < nhv; v++)
        if (incr_item(tstats, s_k_inval_pages, hv[v].n) < 0)
            goto fail;
    for (int k = 0; k < n; k++) {
        if (r->wflags == 0) { /* a write(2) replaces what is pending or pushed */
            if (PyDict_DelItem(pending, keys[k]) < 0) {
                if (!PyErr_ExceptionMatches(PyExc_KeyError))
                    goto fail;
                PyErr_Clear();
            }
            if (PySet_Discard(pushed, keys[k]) < 0)
                goto fail;
        }
    }
    for (int k = 0; k < n; k++)
        if (PySet_Add(cached, keys[k]) < 0)
            goto fail;
    if (incr_item(tstats, s_k_writes, 1) < 0 || incr_item(tstats, s_k_write_bytes, r->size) < 0)
        goto fail;
    now = PyObject_CallMethodNoArgs(e->fs, s_now);
    if (!now || PyObject_SetAttr(r->inode, s_mtime, now) < 0 ||
        PyObject_SetAttr(r->inode, s_ctime, now) < 0)
        goto fail;
    {
        int err = write_reply(e, r->fd, r->unique, r->size);
        pthread_mutex_lock(&e->mu);
        e->wstores++;
        e->wstore_faults += (unsigned long long)wfault;
        if (ob) { /* the reply first: no WRITE reply waits for a notification */
            e->invals += (unsigned long long)ob->nmsg;
            e->wstore_invals += (unsigned long long)ob->nmsg;
            queue_and_wake(e, ob); /* unlocks */
            ob = NULL;
        } else {
            pthread_mutex_unlock(&e->mu);
        }
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
    e->wstore_declined++;
    pthread_mutex_unlock(&e->mu);
    Py_INCREF(Py_None);
    result = Py_None;
out:
    if (have_pc) {
        PyBuffer_Release(&pfr);
        PyBuffer_Release(&pfl);
    }
    Py_XDECREF(pages);
    Py_XDECREF(fstats);
    Py_XDECREF(mmstats);
    Py_XDECREF(budget);
    free(ob);
    for (int v = 0; v < MAXHV; v++) {
        Py_XDECREF(hv[v].ws);
        Py_XDECREF(hv[v].ino_cached);
        Py_XDECREF(hv[v].pushed);
        Py_XDECREF(hv[v].pending);
    }
    for (int q = 0; q < MAXW; q++)
        Py_XDECREF(okeys[q]);
    release_chunk(&cv);
    winview_clear(&me);
    for (int k = 0; k <= MAXW; k++)
        Py_XDECREF(keys[k]);
    Py_XDECREF(pushed);
    Py_XDECREF(pending);
    Py_XDECREF(cached);
    Py_XDECREF(obj);
    Py_XDECREF(mapping);
    Py_XDECREF(arena);
    Py_XDECREF(addrs);
    Py_XDECREF(tmp);
    Py_XDECREF(objs);
    Py_XDECREF(ostate);
    Py_XDECREF(ocached);
    Py_XDECREF(owins);
    Py_XDECREF(wins);
    Py_XDECREF(rmap);
    Py_XDECREF(rstats);
    Py_XDECREF(tstats);
    Py_XDECREF(fsops);
    Py_XDECREF(now);
    return result;
}
