/*
 * mount.server._winfast: which cached pages of another window show the object pages
 * a window store wrote -- one nonlinear VMA's share of fsimpl's object_changed
 * (Rmap.lookup, then _drop_cached's intersection with the window's cached set), for
 * native/winwrite.c, which invalidates them (docs/decisions.md, "Window stores that
 * invalidate other views, and store faults, in C").  Read-only: it changes nothing.
 */
#include "winfast.h"

static PyObject *s_mm, *s_window, *s_address, *s_start, *s_end, *s_pgoff, *s_cached, *s_pt,
    *s_chunks, *s_bits;

#define INTERN(var, text) \
    do { if (!((var) = PyUnicode_InternFromString(text))) return -1; } while (0)

int winviews_init(void)
{
    INTERN(s_mm, "mm");
    INTERN(s_window, "window");
    INTERN(s_address, "address");
    INTERN(s_start, "start");
    INTERN(s_end, "end");
    INTERN(s_pgoff, "pgoff");
    INTERN(s_cached, "cached");
    INTERN(s_pt, "pt");
    INTERN(s_chunks, "_chunks");
    INTERN(s_bits, "bits");
    return 0;
}

/* Whether any of the n entries of a is in [lo, hi]: one unsigned compare per entry
 * ((a - lo) <= (hi - lo) modulo 2^64 is lo <= a <= hi), blocks of 64 OR-reduced
 * without a branch, so the loop vectorises; with AVX2 (a clone picked at load time,
 * as native/winscan.c's chunk_hit) the 64-bit compares are vector ones too.  The
 * signed pair of compares it replaces did not vectorise without SSE4.2: a window
 * store scanned every populated chunk of every other window that way, about half
 * of a uml_physmem WRITE's time in the engine (docs/performance.md, "uml_physmem's
 * requests by kind and path"). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__)
#define SCAN_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SCAN_CLONES
#endif
SCAN_CLONES __attribute__((optimize("O3"))) int pgoffs_hold(const int64_t *a, int n,
                                                            int64_t lo, int64_t hi)
{
    if (lo > hi)
        return 0;
    const uint64_t span = (uint64_t)hi - (uint64_t)lo;
    for (int j = 0; j < n; j += 64) {
        int m = n - j < 64 ? n - j : 64;
        uint64_t any = 0;
        for (int k = 0; k < m; k++)
            any |= ((uint64_t)a[j + k] - (uint64_t)lo) <= span;
        if (any)
            return 1;
    }
    return 0;
}

void vmaview_clear(vmaview_t *v)
{
    Py_CLEAR(v->ws);
    Py_CLEAR(v->cached);
    Py_CLEAR(v->chunks);
}

/* The VMA -> window-state lookup both reverse-map scans of a store start with (this
 * file's cached_showing, winlaunder.c's shown_and_cached): the window whose mm the
 * VMA is of (the table's by_mm, keyed by id(vma.mm)), its ``cached`` set and the
 * VMA's page-table chunks, and where the VMA lies in the window.  1: set (every
 * reference in *v new; vmaview_clear releases them); 0: nothing to look at -- not a
 * window's VMA (object_changed skips it) or a window caching no page; -1: cannot
 * tell (error cleared): the caller declines. */
int vmaview_get(PyObject *table_by_mm, PyObject *vma, vmaview_t *v)
{
    int r = -1;
    PyObject *mm = NULL, *mmkey = NULL, *window = NULL, *pt = NULL;
    memset(v, 0, sizeof *v);
    mm = lean_getattr(vma, s_mm);
    mmkey = mm ? PyLong_FromVoidPtr(mm) : NULL; /* id(vma.mm) */
    if (!mmkey)
        goto out;
    v->ws = PyDict_GetItemWithError(table_by_mm, mmkey); /* borrowed */
    if (!v->ws) {
        r = PyErr_Occurred() ? -1 : 0; /* not a window: object_changed skips it */
        goto out;
    }
    Py_INCREF(v->ws);
    long long vstart, vend, waddr;
    window = lean_getattr(v->ws, s_window);
    if (!window || attr_ll(window, s_address, &waddr) < 0 || attr_ll(vma, s_start, &vstart) < 0 ||
        attr_ll(vma, s_end, &vend) < 0 || attr_ll(vma, s_pgoff, &v->vpgoff) < 0)
        goto out;
    if (vstart < waddr || vend <= vstart || ((vstart | vend | waddr) & (PAGE_SIZE - 1)))
        goto out;
    v->cached = lean_getattr(v->ws, s_cached);
    if (!v->cached || !PySet_Check(v->cached))
        goto out;
    if (PySet_GET_SIZE(v->cached) == 0) {
        r = 0;
        goto out;
    }
    v->start_vpn = vstart >> PAGE_SHIFT;
    v->npages = (vend - vstart) >> PAGE_SHIFT;
    v->lo = (vstart - waddr) >> PAGE_SHIFT; /* window page of the VMA's first */
    pt = lean_getattr(vma, s_pt);
    v->chunks = pt ? lean_getattr(pt, s_chunks) : NULL;
    if (!v->chunks || !PyDict_Check(v->chunks))
        goto out;
    r = 1;
out:
    if (r < 0)
        PyErr_Clear();
    if (r < 1)
        vmaview_clear(v);
    Py_XDECREF(mm);
    Py_XDECREF(mmkey);
    Py_XDECREF(window);
    Py_XDECREF(pt);
    return r;
}

/* The next page-table chunk of v (from *pos, PyDict_Next's cursor) whose pgoffs hold one
 * in [pmin, pmax]: 1 with its first vpn in *vpn0 and its bits and pgoffs held in bv, pv
 * (the caller releases both), 0 when none is left, -1 when a chunk cannot be read.  The
 * pgoffs are fetched first: most chunks hold none in range, and a buffer export costs
 * more than the scan.  The loop head of both reverse-map scans of a store
 * (cached_showing here, winlaunder.c's shown_and_cached). */
int vmaview_next(vmaview_t *v, Py_ssize_t *pos, long long pmin, long long pmax,
                 long long *vpn0, Py_buffer *bv, Py_buffer *pv)
{
    PyObject *k, *c;
    while (PyDict_Next(v->chunks, pos, &k, &c)) {
        long long ck = PyLong_AsLongLong(k);
        if (ck == -1 && PyErr_Occurred())
            return -1;
        if (get_array(c, s_pgoff, CHUNK, 8, pv) < 0)
            return -1;
        if (!pgoffs_hold(pv->buf, CHUNK, pmin, pmax)) {
            PyBuffer_Release(pv);
            continue;
        }
        if (get_array(c, s_bits, CHUNK, 1, bv) < 0) {
            PyBuffer_Release(pv);
            return -1;
        }
        *vpn0 = ck << CHUNK_SHIFT;
        return 1;
    }
    return 0;
}

/* Whether object page pg shows through v's none entry at its linear position (a none
 * entry shows vm_pgoff + i): 1 with that vpn in *vpn, 0 if pg is outside the VMA or the
 * entry is not none, -1 on an error. */
int vmaview_none_at(vmaview_t *v, long long pg, long long *vpn)
{
    if (pg < v->vpgoff || pg - v->vpgoff >= v->npages)
        return 0;
    *vpn = v->start_vpn + (pg - v->vpgoff);
    PyObject *kk = PyLong_FromLongLong(*vpn >> CHUNK_SHIFT);
    if (!kk)
        return -1;
    PyObject *cc = PyDict_GetItemWithError(v->chunks, kk);
    Py_DECREF(kk);
    if (!cc)
        return PyErr_Occurred() ? -1 : 1;
    Py_buffer bv;
    if (get_array(cc, s_bits, CHUNK, 1, &bv) < 0)
        return -1;
    int b = ((const uint8_t *)bv.buf)[*vpn & (CHUNK - 1)];
    PyBuffer_Release(&bv);
    return !b;
}

/* One nonlinear VMA's share of object_changed(obj, [pmin, pmax], writer, written) for
 * a store: Rmap.lookup's window pages of ``vma`` showing an object page in [pmin,
 * pmax] (present or file entries holding one, none entries at its linear position),
 * intersected with that window's ``cached`` -- the pages _drop_cached invalidates.
 * On 0, *hws is the window's WinState (a new reference, NULL if the VMA is not a
 * window's) and hits[0..*nh) its cached pages found, ascending; -1: cannot tell or
 * more than MAXHIT (decline). */
int cached_showing(PyObject *table_by_mm, PyObject *vma, long long pmin, long long pmax,
                   PyObject *self_ws, long long self_lo, long long self_hi, PyObject **hws,
                   long long *hits, int *nh)
{
    vmaview_t v;
    *hws = NULL;
    *nh = 0;
    int r = vmaview_get(table_by_mm, vma, &v);
    if (r < 1)
        return r;
    r = -1;
    PyObject *ws = v.ws, *cached = v.cached;
    long long start_vpn = v.start_vpn, npages = v.npages, lo = v.lo;
    long long cand[MAXHIT * 4];
    int nc = 0;
    /* present or file entries holding one of [pmin, pmax] */
    Py_ssize_t pos = 0;
    long long vpn0, vpn;
    Py_buffer bv, pv;
    int g;
    while ((g = vmaview_next(&v, &pos, pmin, pmax, &vpn0, &bv, &pv)) > 0) {
        const uint8_t *bits = bv.buf;
        const int64_t *pgo = pv.buf;
        int over = 0;
        for (int j = 0; j < CHUNK; j++) {
            int b = bits[j];
            if (!(b & (PTE_PRESENT | PTE_FILE)) || (b & PTE_ANON) || pgo[j] < pmin ||
                pgo[j] > pmax)
                continue;
            vpn = vpn0 + j;
            if (vpn < start_vpn || vpn >= start_vpn + npages)
                continue;
            if (nc >= MAXHIT * 4) {
                over = 1;
                break;
            }
            cand[nc++] = lo + (vpn - start_vpn);
        }
        PyBuffer_Release(&bv);
        PyBuffer_Release(&pv);
        if (over)
            goto out;
    }
    if (g < 0)
        goto out;
    /* none entries at the linear position of one of [pmin, pmax] show it too */
    for (long long pg = pmin; pg <= pmax; pg++) {
        int none = vmaview_none_at(&v, pg, &vpn);
        if (none < 0)
            goto out;
        if (!none)
            continue;
        if (nc >= MAXHIT * 4)
            goto out;
        cand[nc++] = lo + (vpn - start_vpn);
    }
    /* _drop_cached: the cached ones, the writer's written pages left out; sorted */
    for (int q = 0; q < nc; q++) {
        long long page = cand[q];
        if (ws == self_ws && page >= self_lo && page < self_hi)
            continue;
        PyObject *key = PyLong_FromLongLong(page);
        if (!key)
            goto out;
        int in = PySet_Contains(cached, key);
        Py_DECREF(key);
        if (in < 0)
            goto out;
        if (!in)
            continue;
        if (*nh >= MAXHIT)
            goto out;
        int j = (*nh)++;
        while (j > 0 && hits[j - 1] > page) {
            hits[j] = hits[j - 1];
            j--;
        }
        hits[j] = page;
    }
    for (int q = 1; q < *nh; q++)
        if (hits[q] == hits[q - 1])
            goto out; /* one page found twice: cannot be (disjoint lists) */
    r = 0;
    if (*nh) {
        *hws = ws;
        v.ws = NULL;
    }
out:
    if (r < 0)
        PyErr_Clear();
    vmaview_clear(&v);
    return r;
}

