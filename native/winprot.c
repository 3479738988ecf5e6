/*
 * The per-page MPROTECT of a window in C (issue 12, winprot).
 *
 * SHMFS_IOC_WIN_MPROTECT without SHMFS_MPROTECT_VMA gives pages [start, start+size)
 * of a window their own protection: fsimpl's WindowTable.mprotect does it as runs of
 * MAP_CHGPROT|MAP_NONBLOCK remaps to the object pages the pages already show
 * (_chgprot_vma -> remap_file_pages_vec -> _apply_vec), then invalidates the cached
 * pages whose effective protection changed (_changed_vec -> _drop_cached, coalesced).
 * winprot_mprotect() does exactly that for the common case -- 1 to 16 pages inside
 * one existing page-table chunk of a window of one VMA that is already nonlinear and
 * VM_MANYPROTS, no anonymous PTE, and every cached page of the range changing its
 * protection or, outside the changing ones' span, refaulted as a MINOR read prefault
 * of a resident page (native/winvec.c) -- on the same Python
 * objects, every check before the first change, and returns None (untouched) for
 * anything else, so the session answers it in Python. uml_physmem's "protect" is
 * this call for one page.
 */
#include "winfast.h"

#define MPROTECT_CMD 0x40185303u /* _IOW('S', 3, struct shmfs_win_mprotect) */
#define MPROTECT_SIZE 24

static PyObject *s_wins, *s_handles, *s_ino, *s_flags, *s_window, *s_mm, *s_vmas, *s_start,
    *s_end, *s_prot, *s_pgoff, *s_cached,
    *s_pending, *s_pushed, *s_epoch, *s_stats, *s_pte_bits, *s_ext,
    *s_zaps, *s_ptes_zapped, *s_remaps, *s_remap_pages,
    *s_npages, *s_address, *s_k_mprotects, *s_k_inval_events, *s_k_inval_pages;

#define INTERN(var, text) \
    do { if (!((var) = PyUnicode_InternFromString(text))) return -1; } while (0)

int winprot_init(void)
{
    INTERN(s_wins, "wins");
    INTERN(s_handles, "_handles");
    INTERN(s_ino, "ino");
    INTERN(s_flags, "flags");
    INTERN(s_window, "window");
    INTERN(s_mm, "mm");
    INTERN(s_vmas, "_vmas");
    INTERN(s_start, "start");
    INTERN(s_end, "end");
    INTERN(s_prot, "prot");
    INTERN(s_pgoff, "pgoff");
    INTERN(s_cached, "cached");
    INTERN(s_pending, "pending");
    INTERN(s_pushed, "pushed");
    INTERN(s_epoch, "epoch");
    INTERN(s_stats, "stats");
    INTERN(s_pte_bits, "pte_file_max_bits");
    INTERN(s_ext, "ext");
    INTERN(s_zaps, "zaps");
    INTERN(s_ptes_zapped, "ptes_zapped");
    INTERN(s_remaps, "remaps");
    INTERN(s_remap_pages, "remap_pages");
    INTERN(s_npages, "npages");
    INTERN(s_address, "address");
    INTERN(s_k_mprotects, "mprotects");
    INTERN(s_k_inval_events, "inval_events");
    INTERN(s_k_inval_pages, "inval_pages");
    return 0;
}

int winprot_is_mprotect(const unsigned char *m, Py_ssize_t len)
{
    return len == IN_HEADER + IOCTL_IN + MPROTECT_SIZE &&
           get_u32(m + IN_HEADER + 12) == MPROTECT_CMD;
}

#define DECLINE() do { e->last_decline = __LINE__; goto decline; } while (0)

/* The message (already known to be an MPROTECT of the right length by
 * winprot_is_mprotect). None: declined, nothing changed; else the number of
 * notifications queued ahead of the reply. */
PyObject *winprot_mprotect(Engine *e, const unsigned char *m, Py_ssize_t len)
{
    PyObject *ws = NULL, *window = NULL, *mm = NULL, *vmas = NULL, *vma = NULL;
    PyObject *mapping = NULL, *pt = NULL, *chunks = NULL, *cached = NULL, *pending = NULL;
    PyObject *pushed = NULL, *tstats = NULL, *mmstats = NULL, *ikey = NULL;
    PyObject *wins = NULL, *handles = NULL, *h = NULL;
    PyObject *keys[MAXPAGES] = {0}, *olds[MAXPAGES] = {0};
    chunk_views cv = {0};
    batch_t *b = NULL;
    PyObject *result = NULL;

    if (get_u32(m) != (uint32_t)len || get_u32(m + 4) != OP_IOCTL || get_u32(m + 36) != 0)
        goto decline_early;
    uint64_t unique = get_u64(m + 8), nodeid = get_u64(m + 16);
    const unsigned char *io = m + IN_HEADER;
    uint64_t fh = get_u64(io);
    if (get_u32(io + 8) != 0 || get_u32(io + 24) != MPROTECT_SIZE)
        goto decline_early;
    const unsigned char *d = io + IOCTL_IN;
    uint64_t start = get_u64(d), size = get_u64(d + 8);
    uint32_t prot = get_u32(d + 16), mflags = get_u32(d + 20);
    /* flags 0 (MPROTECT_VMA splits the VMA: Python), prot within PROT_READ|PROT_WRITE
     * (else EINVAL), start aligned, 1 to 16 pages */
    if (mflags != 0 || prot & ~(uint32_t)(PROT_READ_ | PROT_WRITE_) || (start & (PAGE_SIZE - 1)) ||
        size == 0 || size > (uint64_t)MAXPAGES * PAGE_SIZE || start >= (1ULL << 46) ||
        nodeid > (uint64_t)LLONG_MAX || fh > (uint64_t)LLONG_MAX)
        goto decline_early;
    int n = (int)((size + PAGE_SIZE - 1) >> PAGE_SHIFT);
    long long lo = (long long)(start >> PAGE_SHIFT);

    /* ---- phase 1: look, decide; nothing changes ---- */
    wins = lean_getattr(e->table, s_wins);
    if (!wins || !PyDict_Check(wins))
        DECLINE();
    ikey = PyLong_FromUnsignedLongLong(nodeid);
    if (!ikey)
        DECLINE();
    ws = PyDict_GetItemWithError(wins, ikey);
    Py_CLEAR(ikey);
    if (!ws)
        DECLINE();
    Py_INCREF(ws);
    /* _writable_fh: a handle of this inode, open for writing (EBADF in Python) */
    handles = lean_getattr(e->fs, s_handles);
    if (!handles || !PyDict_Check(handles))
        DECLINE();
    ikey = PyLong_FromUnsignedLongLong(fh);
    if (!ikey)
        DECLINE();
    h = PyDict_GetItemWithError(handles, ikey);
    Py_CLEAR(ikey);
    if (!h)
        DECLINE();
    Py_INCREF(h);
    long long hino, hflags, wprot, npages, waddr;
    if (attr_ll(h, s_ino, &hino) < 0 || attr_ll(h, s_flags, &hflags) < 0)
        DECLINE();
    if ((uint64_t)hino != nodeid || (hflags & 3) == 0 /* O_RDONLY */)
        DECLINE();
    if (attr_ll(ws, s_prot, &wprot) < 0 || attr_ll(ws, s_npages, &npages) < 0)
        DECLINE();
    if ((long long)prot & ~wprot)
        DECLINE(); /* EACCES in Python: beyond what the window was attached with */
    if (lo + n > npages)
        DECLINE(); /* ENOMEM in Python */
    window = lean_getattr(ws, s_window);
    if (!window || attr_ll(window, s_address, &waddr) < 0)
        DECLINE();
    mm = lean_getattr(window, s_mm);
    if (!mm)
        DECLINE();
    vmas = lean_getattr(mm, s_vmas);
    if (!vmas || !PyList_Check(vmas) || PyList_GET_SIZE(vmas) != 1)
        DECLINE(); /* a split window: Python */
    vma = PyList_GET_ITEM(vmas, 0);
    Py_INCREF(vma);
    long long vstart, vend, vflags, vprot, vpgoff, ptebits, ext;
    if (attr_ll(vma, s_start, &vstart) < 0 || attr_ll(vma, s_end, &vend) < 0 ||
        attr_ll(vma, s_flags, &vflags) < 0 || attr_ll(vma, s_prot, &vprot) < 0 ||
        attr_ll(vma, s_pgoff, &vpgoff) < 0 || attr_ll(mm, s_pte_bits, &ptebits) < 0 ||
        attr_ll(mm, s_ext, &ext) < 0)
        DECLINE();
    if (vstart != waddr || vend != waddr + (npages << PAGE_SHIFT))
        DECLINE();
    /* remap_file_pages_vec's one-pass case: nonlinear already (else entry by entry,
     * which converts it), VM_MANYPROTS already set (else _apply_vec sets the IntFlag) */
    if ((vflags & (VM_SHARED | VM_NONLINEAR | VM_CAN_NONLINEAR | VM_MANYPROTS)) !=
        (VM_SHARED | VM_NONLINEAR | VM_CAN_NONLINEAR | VM_MANYPROTS))
        DECLINE();
    if (!(ext & PAGER_EXT_PER_PAGE_PROT) || ((long long)prot & ~vprot))
        DECLINE();
    if (ptebits < 1 || ptebits > 62)
        DECLINE();
    long long vpn = (waddr + (long long)start) >> PAGE_SHIFT;
    int slot0 = (int)(vpn & (CHUNK - 1));
    PyObject *chunk;
    if (inplace_chunk(e, mm, vma, vpn, n, &mapping, &pt, &chunks, &chunk) < 0)
        goto decline;
    if (load_chunk(chunk, &cv) < 0)
        DECLINE();
    uint8_t *cbits = cv.bits.buf, *cprot = cv.prot.buf;
    int64_t *cframe = cv.frame.buf, *cpgoff = cv.pgoff.buf;

    cached = lean_getattr(ws, s_cached);
    pending = lean_getattr(ws, s_pending);
    pushed = lean_getattr(ws, s_pushed);
    if (!cached || !pending || !pushed || !PySet_Check(cached) || !PyDict_Check(pending) ||
        !PySet_Check(pushed))
        DECLINE();
    long long shown[MAXPAGES], old_eff[MAXPAGES], aframe[MAXPAGES];
    int moved[MAXPAGES], again[MAXPAGES], nagain = 0, npresent = 0, pgruns = 0, first_moved = -1, last_moved = -1;
    for (int k = 0; k < n; k++) {
        int ob = cbits[slot0 + k];
        if (ob & PTE_ANON)
            DECLINE();
        if (ob & PTE_PRESENT)
            npresent++;
        /* what the page shows (_state): its PTE's pgoff, or the linear one */
        shown[k] = (ob & (PTE_PRESENT | PTE_FILE)) ? cpgoff[slot0 + k]
                                                   : (vpn + k - (vstart >> PAGE_SHIFT)) + vpgoff;
        if (shown[k] < 0 || shown[k] + n >= (1LL << ptebits))
            DECLINE(); /* row 5 of a run (checked more strictly here): Python */
        old_eff[k] = (ob & PTE_OWNPROT) ? cprot[slot0 + k] : vprot;
        if (k == 0 || shown[k] != shown[k - 1] + 1)
            pgruns++; /* _chgprot_vma: one remap entry per run of consecutive pgoffs */
        keys[k] = PyLong_FromLongLong(lo + k);
        if (!keys[k])
            DECLINE();
        int c = PySet_Contains(cached, keys[k]);
        if (c < 0)
            DECLINE();
        moved[k] = c && old_eff[k] != (long long)prot;
        again[k] = c && !moved[k]; /* unchanged but left a file PTE: refaulted */
        if (again[k]) {
            /* a read prefault of a resident page (native/winvec.c), else Python */
            if (!e->vec_enabled || !(prot & PROT_READ_) ||
                winvec_refault_frame(mapping, shown[k], &aframe[k]) < 0)
                DECLINE();
            nagain++;
        }
        if (moved[k]) {
            if (first_moved < 0)
                first_moved = k;
            last_moved = k;
            olds[k] = Py_BuildValue("(LL)", shown[k], old_eff[k]);
            if (!olds[k])
                DECLINE();
        }
    }
    /* a refaulted page inside the moved span would be dropped by the coalesced INVAL
     * (_drop_cached's merged run): Python */
    for (int k = first_moved + 1; nagain && k < last_moved; k++)
        if (again[k])
            DECLINE();
    tstats = lean_getattr(e->table, s_stats);
    mmstats = lean_getattr(mm, s_stats);
    if (!tstats || !PyDict_Check(tstats) || !mmstats)
        DECLINE();
    /* _drop_cached(coalesce=True): the moved pages are the range's cached pages but
     * the refaulted ones outside them, so the merged runs are one:
     * [first_moved, last_moved] */
    int ninval = first_moved >= 0;
    {
        size_t cap = 40 + 32;
        b = malloc(sizeof(batch_t) + cap);
        if (!b) {
            PyErr_NoMemory();
            goto fail;
        }
        memset(b, 0, sizeof(batch_t));
        b->cap = cap;
        b->ino = nodeid;
        size_t pos = 0;
        if (ninval) {
            unsigned char *p = b->buf;
            put_u32(p, 40);
            put_u32(p + 4, NOTIFY_INVAL_INODE);
            put_u64(p + 8, 0);
            put_u64(p + 16, nodeid);
            put_u64(p + 24, (uint64_t)(lo + first_moved) << PAGE_SHIFT);
            put_u64(p + 32, (uint64_t)(last_moved - first_moved + 1) << PAGE_SHIFT);
            b->off[b->nmsg] = 0;
            b->len[b->nmsg++] = 40;
            pos = 40;
        }
        add_ioctl_reply(b, pos, unique, 32);
    }

    /* ---- phase 2: apply, as the Python path does ---- */
    if (incr_attr(ws, s_epoch, 1) < 0)
        goto fail;
    /* _apply_vec: set_file_pages (own protection, the pgoffs shown), the zap of the
     * present PTEs it replaced (_after_zap: nothing anonymous), the remap counters */
    for (int k = 0; k < n; k++) {
        cbits[slot0 + k] = PTE_FILE | PTE_OWNPROT;
        cprot[slot0 + k] = (uint8_t)prot;
        cframe[slot0 + k] = 0;
        cpgoff[slot0 + k] = shown[k];
    }
    if (npresent && (incr_attr(mmstats, s_zaps, 1) < 0 ||
                     incr_attr(mmstats, s_ptes_zapped, npresent) < 0))
        goto fail;
    if (incr_attr(mmstats, s_remaps, pgruns) < 0 || incr_attr(mmstats, s_remap_pages, n) < 0)
        goto fail;
    /* _changed_vec -> _refault: the unchanged cached pages present again, a read
     * prefault (_install_bits: writable when the page's protection is) */
    for (int k = 0; k < n && nagain; k++) {
        if (!again[k])
            continue;
        cbits[slot0 + k] = (uint8_t)(PTE_PRESENT | PTE_OWNPROT | ((prot & PROT_WRITE_) ? PTE_WRITE : 0));
        cframe[slot0 + k] = aframe[k];
        if (winvec_refault(e, mapping, mmstats) < 0)
            goto fail;
    }
    /* _changed_vec -> _drop_cached: settle, uncache, remember the old target */
    for (int k = 0; k < n; k++) {
        if (!moved[k])
            continue;
        if (settle(e, nodeid, (uint64_t)(lo + k), keys[k], pushed, pending) < 0)
            goto fail;
        if (PySet_Discard(cached, keys[k]) < 0)
            goto fail;
        int has = PyDict_Contains(pending, keys[k]);
        if (has < 0)
            goto fail;
        if (!has && PyDict_SetItem(pending, keys[k], olds[k]) < 0)
            goto fail;
    }
    if (ninval && (incr_item(tstats, s_k_inval_events, 1) < 0 ||
                   incr_item(tstats, s_k_inval_pages, last_moved - first_moved + 1) < 0))
        goto fail;
    if (incr_item(tstats, s_k_mprotects, 1) < 0)
        goto fail;

    /* ---- queue it (the writer thread writes the INVAL, then the reply) ---- */
    pthread_mutex_lock(&e->mu);
    e->handled++;
    e->mprotects++;
    e->refaults += (unsigned long long)nagain;
    e->invals += (unsigned long long)ninval;
    queue_and_wake(e, b);
    b = NULL;
    result = PyLong_FromLong(ninval);
    goto out;

fail:
    result = NULL; /* only a failed allocation of a Python object, in phase 2 */
    goto out;
decline:
    if (PyErr_Occurred())
        PyErr_Clear();
    e->declined++;
    Py_INCREF(Py_None);
    result = Py_None;
out:
    free(b);
    release_chunk(&cv);
    for (int k = 0; k < MAXPAGES; k++) {
        Py_XDECREF(keys[k]);
        Py_XDECREF(olds[k]);
    }
    Py_XDECREF(ws);
    Py_XDECREF(window);
    Py_XDECREF(mm);
    Py_XDECREF(vmas);
    Py_XDECREF(vma);
    Py_XDECREF(mapping);
    Py_XDECREF(pt);
    Py_XDECREF(chunks);
    Py_XDECREF(cached);
    Py_XDECREF(pending);
    Py_XDECREF(pushed);
    Py_XDECREF(tstats);
    Py_XDECREF(mmstats);
    Py_XDECREF(ikey);
    Py_XDECREF(wins);
    Py_XDECREF(handles);
    Py_XDECREF(h);
    return result;

decline_early:
    e->declined++;
    Py_RETURN_NONE;
}
