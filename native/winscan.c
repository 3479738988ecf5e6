/*
 * vmcore._ptscan: which page-table chunks can hold an entry showing an object page
 * of [first, last] -- the filter in front of PageTable.find_pgoffs and zap.
 *
 * Why (docs/performance.md, "Window WRITEs and READs in C"): a nonlinear window's reverse map
 * is a scan of its whole page table (there is no pgoff -> PTE index, as in the
 * kernel's nonlinear VMAs), done with ~6 numpy calls per 512-entry chunk.  A window
 * of 64 Ki pages (uml_physmem's physmem) has 128 chunks: every write(2) or
 * write-back of a window page (object_changed -> Rmap.lookup) and every punch of
 * the object (unmap_mapping_range -> zap) paid ~800 numpy calls, ~0.5-0.9 ms,
 * to find the one or two entries that matter.  This scan decides in C which
 * chunks have any candidate (~0.1 us a chunk) and the numpy code runs on those
 * only; it changes nothing.
 *
 * hits(chunks, first, last, need) -> list of the keys of ``chunks`` (a dict of
 * vmcore.pagetable._Chunk) with an entry whose bits & need is nonzero and whose
 * pgoff is in [first, last], or whose bits are all zero (an empty chunk: zap's
 * _maybe_free must see it).  A chunk whose arrays are not what they should be is
 * listed too (the numpy path then decides, as without this module).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

#define CHUNK 512

static PyObject *s_bits, *s_pgoff;

/* One unsigned compare per entry ((pgoff - first) <= (last - first), modulo 2^64, is
 * first <= pgoff <= last) and no branch, so the loop vectorises; with AVX2 (a clone
 * picked at load time, where the CPU has it) the 64-bit compares are vector ones too:
 * ~0.8 -> ~0.2 us a chunk, and a one-page punch scans every nonlinear VMA's chunks
 * twice (docs/performance.md, "A one-page MADV_REMOVE without numpy"). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__)
#define SCAN_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SCAN_CLONES
#endif
SCAN_CLONES __attribute__((optimize("O3"))) static int chunk_hit(const uint8_t *bits,
                                                                 const int64_t *pgo,
                                                                 int64_t first, int64_t last,
                                                                 int need)
{
    const uint64_t span = (uint64_t)last - (uint64_t)first;
    uint64_t any = 0;
    unsigned used = 0;
    if (first > last) { /* an empty range: only an empty chunk is listed */
        for (int j = 0; j < CHUNK; j++)
            used |= bits[j];
        return !used;
    }
    for (int j = 0; j < CHUNK; j++) {
        uint64_t in = ((uint64_t)pgo[j] - (uint64_t)first) <= span;
        any |= in & (uint64_t)((bits[j] & need) != 0);
        used |= bits[j];
    }
    return any || !used;
}

static int view_flags(PyObject *c, PyObject *name, Py_ssize_t itemsize, Py_buffer *v,
                      int flags)
{
    PyObject *a = PyObject_GetAttr(c, name);
    if (!a) {
        PyErr_Clear();
        return -1;
    }
    int r = PyObject_GetBuffer(a, v, flags);
    Py_DECREF(a);
    if (r < 0) {
        PyErr_Clear();
        return -1;
    }
    if (v->len != CHUNK * itemsize || v->itemsize != itemsize) {
        PyBuffer_Release(v);
        return -1;
    }
    return 0;
}

static int view(PyObject *c, PyObject *name, Py_ssize_t itemsize, Py_buffer *v)
{
    return view_flags(c, name, itemsize, v, PyBUF_C_CONTIGUOUS);
}

static PyObject *hits(PyObject *self, PyObject *args)
{
    PyObject *chunks;
    long long first, last;
    int need;
    if (!PyArg_ParseTuple(args, "O!LLi", &PyDict_Type, &chunks, &first, &last, &need))
        return NULL;
    PyObject *out = PyList_New(0);
    if (!out)
        return NULL;
    Py_ssize_t pos = 0;
    PyObject *k, *c;
    while (PyDict_Next(chunks, &pos, &k, &c)) {
        Py_buffer bv, pv;
        int hit = 1; /* unless the arrays say otherwise */
        if (view(c, s_bits, 1, &bv) == 0) {
            if (view(c, s_pgoff, 8, &pv) == 0) {
                hit = chunk_hit(bv.buf, pv.buf, first, last, need);
                PyBuffer_Release(&pv);
            }
            PyBuffer_Release(&bv);
        }
        if (hit && PyList_Append(out, k) < 0) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

/* vmas_hit(vmas, first, last, need) -> (indices, chunks) or None.  For a list of VMAs
 * (vmcore.vma.Vma, each with its page table ``pt`` and its ``pt._chunks`` dict), the
 * indices of those whose table has a chunk ``hits`` would list -- the only VMAs whose
 * zap over [first, last] can change anything -- and the number of populated chunks of
 * all of them (Rmap's ``nonlinear_pages_scanned`` / 512).  None when the VMAs do not
 * each have a table of their own (a zap of one could then free a chunk another's count
 * includes): the caller walks them one by one, as before.  A VMA whose table cannot be
 * read is listed (its zap decides). */
#define MAXV 64
static PyObject *s_pt, *s_chunks;
static PyObject *vmas_hit(PyObject *self, PyObject *args)
{
    PyObject *vmas;
    long long first, last;
    int need;
    if (!PyArg_ParseTuple(args, "O!LLi", &PyList_Type, &vmas, &first, &last, &need))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(vmas);
    if (n > MAXV)
        Py_RETURN_NONE;
    PyObject *pts[MAXV];
    Py_ssize_t got = 0, nch = 0;
    PyObject *out = PyList_New(0);
    if (!out)
        return NULL;
    int distinct = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pt = PyObject_GetAttr(PyList_GET_ITEM(vmas, i), s_pt);
        PyObject *chunks = pt ? PyObject_GetAttr(pt, s_chunks) : NULL;
        int hit = 1;
        if (!chunks || !PyDict_Check(chunks)) {
            PyErr_Clear();
        } else {
            for (Py_ssize_t j = 0; j < got; j++)
                if (pts[j] == pt)
                    distinct = 0;
            nch += PyDict_GET_SIZE(chunks);
            hit = 0;
            Py_ssize_t pos = 0;
            PyObject *k, *c;
            while (!hit && PyDict_Next(chunks, &pos, &k, &c)) {
                Py_buffer bv, pv;
                hit = 1;
                if (view(c, s_bits, 1, &bv) == 0) {
                    if (view(c, s_pgoff, 8, &pv) == 0) {
                        hit = chunk_hit(bv.buf, pv.buf, first, last, need);
                        PyBuffer_Release(&pv);
                    }
                    PyBuffer_Release(&bv);
                }
            }
        }
        Py_XDECREF(chunks);
        if (pt)
            pts[got++] = pt; /* a reference kept until the end: identities stay unique */
        PyObject *ix = hit ? PyLong_FromSsize_t(i) : NULL;
        if (hit && (!ix || PyList_Append(out, ix) < 0)) {
            Py_XDECREF(ix);
            for (Py_ssize_t j = 0; j < got; j++)
                Py_DECREF(pts[j]);
            Py_DECREF(out);
            return NULL;
        }
        Py_XDECREF(ix);
    }
    for (Py_ssize_t j = 0; j < got; j++)
        Py_DECREF(pts[j]);
    if (!distinct) {
        Py_DECREF(out);
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(Nn)", out, nch);
}

/* zap_chunk(chunk, s, e, pg_first, pg_last, skip_anon, base, vstart, vpgoff) -> list of
 * (vpn, frame, pgoff, bits) or None.  PageTable.zap's work on one chunk slice [s, e) of
 * a nonlinear VMA (nonlinear_base = (vstart, vpgoff)), for a pgoff range: every present
 * entry whose pgoff is in [pg_first, pg_last] (signed, as numpy compares int64), and not
 * a private COW copy when skip_anon, is reported as it was and cleared -- to a file PTE
 * keeping its pgoff and its own-protection bit where the pgoff is not its linear one or
 * it carries its own protection, else to none -- with its frame set to 0.  Exactly the
 * numpy statements of zap, in slot order; the per-chunk numpy calls (about a dozen) were
 * most of a one-page punch's zap (docs/decisions.md, "A one-page punch ...").  None: the
 * chunk's arrays are not what they should be (the caller takes the numpy path). */
#define PTE_PRESENT_ 0x01
#define PTE_FILE_ 0x02
#define PTE_ANON_ 0x10
#define PTE_OWNPROT_ 0x20
static PyObject *s_frame;
static PyObject *zap_chunk(PyObject *self, PyObject *args)
{
    PyObject *c;
    int s, e, skip_anon;
    long long pg_first, pg_last, base, vstart, vpgoff;
    if (!PyArg_ParseTuple(args, "OiiLLpLLL", &c, &s, &e, &pg_first, &pg_last, &skip_anon,
                          &base, &vstart, &vpgoff))
        return NULL;
    if (s < 0 || e > CHUNK || s > e) {
        PyErr_SetString(PyExc_ValueError, "slot range outside a chunk");
        return NULL;
    }
    Py_buffer bv, fv, pv;
    if (view_flags(c, s_bits, 1, &bv, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0)
        Py_RETURN_NONE;
    if (view_flags(c, s_frame, 8, &fv, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&bv);
        Py_RETURN_NONE;
    }
    if (view(c, s_pgoff, 8, &pv) < 0) {
        PyBuffer_Release(&bv);
        PyBuffer_Release(&fv);
        Py_RETURN_NONE;
    }
    uint8_t *bits = bv.buf;
    int64_t *frame = fv.buf;
    const int64_t *pgo = pv.buf;
    PyObject *out = PyList_New(0);
    for (int j = s; out && j < e; j++) {
        uint8_t b = bits[j];
        int64_t pg = pgo[j];
        if (!(b & PTE_PRESENT_) || pg < pg_first || pg > pg_last ||
            (skip_anon && (b & PTE_ANON_)))
            continue;
        PyObject *row = Py_BuildValue("(LLLi)", (long long)(base + j), (long long)frame[j],
                                      (long long)pg, (int)b);
        if (!row || PyList_Append(out, row) < 0) {
            Py_XDECREF(row);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(row);
        long long linear = base + j - vstart + vpgoff;
        int own = b & PTE_OWNPROT_;
        bits[j] = (pg != linear || own) ? (uint8_t)(PTE_FILE_ | own) : 0;
        frame[j] = 0;
    }
    PyBuffer_Release(&bv);
    PyBuffer_Release(&fv);
    PyBuffer_Release(&pv);
    return out;
}

static PyMethodDef methods[] = {
    {"zap_chunk", zap_chunk, METH_VARARGS,
     "zap_chunk(chunk, s, e, pg_first, pg_last, skip_anon, base, vstart, vpgoff) -> "
     "[(vpn, frame, pgoff, bits)] of the present entries cleared (nonlinear zap of a "
     "pgoff range), or None (arrays not as expected)"},
    {"vmas_hit", vmas_hit, METH_VARARGS,
     "vmas_hit(vmas, first, last, need) -> (indices of the VMAs whose table has a chunk "
     "hits() would list, populated chunks of all) or None (tables shared)"},
    {"hits", hits, METH_VARARGS,
     "hits(chunks, first, last, need) -> keys of the chunks that may hold an entry "
     "(bits & need) showing a pgoff in [first, last], or are empty"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {
    PyModuleDef_HEAD_INIT, "_ptscan", "Page-table chunk filter (native/winscan.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__ptscan(void)
{
    if (!(s_bits = PyUnicode_InternFromString("bits")) ||
        !(s_pgoff = PyUnicode_InternFromString("pgoff")) ||
        !(s_pt = PyUnicode_InternFromString("pt")) ||
        !(s_frame = PyUnicode_InternFromString("frame")) ||
        !(s_chunks = PyUnicode_InternFromString("_chunks")))
        return NULL;
    return PyModule_Create(&moddef);
}
