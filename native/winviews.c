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

/* Whether any of the n entries of a is in [lo, hi] (vectorised as winlaunder.c's). */
__attribute__((optimize("O3"))) static int holds_range(const int64_t *a, int n, int64_t lo,
                                                       int64_t hi)
{
    for (int j = 0; j < n; j += 64) {
        int m = n - j < 64 ? n - j : 64, any = 0;
        for (int k = 0; k < m; k++)
            any |= (a[j + k] >= lo) & (a[j + k] <= hi);
        if (any)
            return 1;
    }
    return 0;
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
    int r = -1;
    PyObject *mm = NULL, *mmkey = NULL, *ws = NULL, *window = NULL, *cached = NULL,
             *pt = NULL, *chunks = NULL;
    *hws = NULL;
    *nh = 0;
    mm = PyObject_GetAttr(vma, s_mm);
    mmkey = mm ? PyLong_FromVoidPtr(mm) : NULL; /* id(vma.mm) */
    if (!mmkey)
        goto out;
    ws = PyDict_GetItemWithError(table_by_mm, mmkey); /* borrowed */
    if (!ws) {
        r = PyErr_Occurred() ? -1 : 0; /* not a window: object_changed skips it */
        goto out;
    }
    Py_INCREF(ws);
    long long vstart, vend, vpgoff, waddr;
    window = PyObject_GetAttr(ws, s_window);
    if (!window || attr_ll(window, s_address, &waddr) < 0 || attr_ll(vma, s_start, &vstart) < 0 ||
        attr_ll(vma, s_end, &vend) < 0 || attr_ll(vma, s_pgoff, &vpgoff) < 0)
        goto out;
    if (vstart < waddr || vend <= vstart || ((vstart | vend | waddr) & (PAGE_SIZE - 1)))
        goto out;
    cached = PyObject_GetAttr(ws, s_cached);
    if (!cached || !PySet_Check(cached))
        goto out;
    if (PySet_GET_SIZE(cached) == 0) {
        r = 0;
        goto out;
    }
    long long start_vpn = vstart >> PAGE_SHIFT, npages = (vend - vstart) >> PAGE_SHIFT;
    long long lo = (vstart - waddr) >> PAGE_SHIFT; /* window page of the VMA's first */
    pt = PyObject_GetAttr(vma, s_pt);
    chunks = pt ? PyObject_GetAttr(pt, s_chunks) : NULL;
    if (!chunks || !PyDict_Check(chunks))
        goto out;
    long long cand[MAXHIT * 4];
    int nc = 0;
    /* present or file entries holding one of [pmin, pmax] */
    Py_ssize_t pos = 0;
    PyObject *k, *c;
    while (PyDict_Next(chunks, &pos, &k, &c)) {
        long long ck = PyLong_AsLongLong(k);
        if (ck == -1 && PyErr_Occurred())
            goto out;
        Py_buffer bv, pv;
        if (get_array(c, s_pgoff, CHUNK, 8, &pv) < 0)
            goto out;
        const int64_t *pgo = pv.buf;
        if (!holds_range(pgo, CHUNK, pmin, pmax)) {
            PyBuffer_Release(&pv);
            continue;
        }
        if (get_array(c, s_bits, CHUNK, 1, &bv) < 0) {
            PyBuffer_Release(&pv);
            goto out;
        }
        const uint8_t *bits = bv.buf;
        int over = 0;
        for (int j = 0; j < CHUNK; j++) {
            int b = bits[j];
            if (!(b & (PTE_PRESENT | PTE_FILE)) || (b & PTE_ANON) || pgo[j] < pmin ||
                pgo[j] > pmax)
                continue;
            long long vpn = (ck << CHUNK_SHIFT) + j;
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
    /* none entries at the linear position of one of [pmin, pmax] show it too */
    for (long long pg = pmin; pg <= pmax; pg++) {
        if (pg < vpgoff || pg - vpgoff >= npages)
            continue;
        long long vpn = start_vpn + (pg - vpgoff);
        int b = 0;
        PyObject *kk = PyLong_FromLongLong(vpn >> CHUNK_SHIFT);
        if (!kk)
            goto out;
        PyObject *cc = PyDict_GetItemWithError(chunks, kk);
        Py_DECREF(kk);
        if (cc) {
            Py_buffer bv;
            if (get_array(cc, s_bits, CHUNK, 1, &bv) < 0)
                goto out;
            b = ((const uint8_t *)bv.buf)[vpn & (CHUNK - 1)];
            PyBuffer_Release(&bv);
        } else if (PyErr_Occurred()) {
            goto out;
        }
        if (b)
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
        ws = NULL;
    }
out:
    if (r < 0)
        PyErr_Clear();
    Py_XDECREF(mm);
    Py_XDECREF(mmkey);
    Py_XDECREF(ws);
    Py_XDECREF(window);
    Py_XDECREF(cached);
    Py_XDECREF(pt);
    Py_XDECREF(chunks);
    return r;
}

