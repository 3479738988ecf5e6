/*
 * mount.server._hotpath: READ, WRITE and GETATTR of regular files, in C.
 *
 * Why (docs/performance.md, issue 15): a 4 KiB READ cost ~7 us of Python in
 * the daemon on top of a ~12 us kernel round trip, a 4 KiB append ~12 us; the
 * goals (80k random reads/s, 500 MB/s of 4 KiB appends) leave a few us.
 *
 * What: Engine.handle(msg, fd, ordered) takes one FUSE request.  If it is a
 * READ, WRITE or GETATTR in the common state (the checks below), the engine
 * applies exactly what the Python path (Operations.handle_fast -> ShmFs.read /
 * write / getattr -> vmcore Mapping.read / write, fault.read1 / write1 /
 * fault(), Arena, PageCache) does to the *same Python objects*: the page
 * cache's chunk arrays, its counters and ``gen``, the Budget, i_size, the
 * inode's times, FAULT_STATS and the mapping's own counters, the ops Counter
 * of ShmFs -- and writes the reply to ``fd`` itself (``handle``), or returns
 * it (``answer``, for the twin tests).  Frames are allocated by calling the
 * arena's own alloc1 / alloc (a one-page WRITE pops the arena's reserve list
 * itself, as alloc1 would, and calls alloc1 to refill it), and chunks created by
 * the page cache's own insert1 / insert_range: the allocator and the index stay
 * in one place.
 *
 * Anything else is declined (None) before anything changes, and the session
 * answers the request in Python: a window file or a window's object, a shared
 * (copy-on-write) frame, a write that the size= limit would cut short or
 * refuse (ENOSPC), set-id bits a write may have to clear, write_flags other
 * than KILL_SUIDGID on a plain file, chattr flags, EFBIG, a bad handle or
 * node id (the errno comes from Python), an arena replaying a journal, an
 * unknown object type.  There is no second copy of any state.
 *
 * The GIL is released for the data copy of a large WRITE and for the writev
 * of a large READ reply: the second reader can then read the device, the
 * notifier and the populate-ahead threads run.  Nothing frees frames outside
 * a request handler, and handlers are serialised (one reader, or the
 * session's fs lock with two), so the pages stay valid meanwhile.
 *
 * Memory safety: every frame index is checked against its arena segment's
 * buffer, every chunk slot against the chunk array's length, every request
 * field against the message length; any unexpected type declines.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define PAGE_SHIFT 12
#define PAGE_SIZE 4096
#define CHUNK_SHIFT 9
#define CHUNK 512

#define OP_GETATTR 3
#define OP_READ 15
#define OP_WRITE 16
#define OP_IOCTL 39 /* hotloop.c: handed to the window engine */
#define IOCTL_IN_ 32 /* hotloop.c: struct fuse_ioctl_in */
#define IN_HEADER 40
#define RW_IN 40 /* fuse_read_in / fuse_write_in */
#define GETATTR_IN 16
#define OUT_HEADER 16
#define ATTR_OUT 104 /* fuse_attr_out: 16 + fuse_attr 88 */
#define ENTRY_OUT 128 /* fuse_entry_out: 40 + fuse_attr 88 */
#define OP_LOOKUP 1
#define OP_RELEASE 18
#define OP_OPEN 14
#define OP_UNLINK 10
#define OP_CREATE 35
#define OP_MKDIR 9
#define OP_RMDIR 11
#define OPEN_IN 8 /* fuse_open_in */
#define OPEN_OUT 16
#define O_TRUNC_ 01000
#define O_ACCMODE_ 3
#define FOPEN_KEEP_CACHE 2
#define FOPEN_NOFLUSH 32
#define RELEASE_IN 24 /* fuse_release_in */
#define ENOENT_ 2
#define ROOT_INO 1

#define PG_UPTODATE 0x1
#define PG_DIRTY 0x2
#define PG_BOTH (PG_UPTODATE | PG_DIRTY)

#define S_IFMT_ 0170000
#define S_IFREG_ 0100000
#define S_IFDIR_ 0040000
#define S_ISUID_ 04000
#define S_ISGID_ 02000
#define O_APPEND_ 02000
#define WRITE_KILL_SUIDGID 4
#define FS_NOATIME_FL 0x80

#define MAXSIZE (1 << 20) /* bytes of one READ or WRITE taken (max_pages is 256) */
#define MAXPAGES ((MAXSIZE >> PAGE_SHIFT) + 1)
#define MAXSEGS 64     /* arena segments one request may touch */
#define NOGIL_BYTES (64 * 1024)
#define MAXOWN 64

static const unsigned char zero_page[PAGE_SIZE];

typedef struct {
    PyObject_HEAD
    PyObject *fs;
    PyObject *t_inode, *t_handle, *t_mapping, *t_pages, *t_budget, *t_arena, *t_stats;
    PyObject *t_watch; /* mount.server.mountflags.MountFlagsWatch, or NULL */
    PyObject *t_dir;   /* fsimpl.directory.Directory */
    long long entry_sec, entry_nsec;
    unsigned long long generation, n_lookup, n_lookup_miss, n_release;
    PyObject *errors_counter; /* Operations._errors (a Counter), or NULL */
    PyObject *enoent_key;     /* the int ENOENT, its key */
    long long neg_sec, neg_nsec; /* negative entries' timeout; neg_sec < 0: none */
    int keep_cache;              /* OpsConfig.keep_cache: FOPEN_KEEP_CACHE on OPEN */
    unsigned long long n_open, n_create, n_unlink, n_forget, n_mkdir, n_rmdir; /* hotmeta.c */
    unsigned long long n_reap; /* hotmeta.c: evictions reaped in C */
    PyObject *fault_stats;
    long long attr_sec, attr_nsec, relatime_s, dirent_size;
    long long max_file_size;
    unsigned long long n_read, n_write, n_getattr, declined, bytes_read, bytes_written;
    unsigned long long nogil, write_errors, errors;
    unsigned long long cl_entries, cl_served, cl_returned; /* hotloop.c */
    unsigned long long cl_window; /* hotloop.c: answered by the window engine */
    unsigned long long cl_enotty; /* hotloop.c: foreign IOCTLs answered ENOTTY */
    unsigned long long n_respop; /* new pages taken from the arena's reserve in C */
    unsigned long long n_reap_pages; /* hotmeta.c: pages of evicted files freed in C */
    unsigned long long n_fast_new; /* hotmeta.c: CREATEs whose objects C made itself */
    long last_decline;
    struct ctx *ctx; /* one request's scratch, reused (handle is never re-entered) */
    int ctx_busy;
    unsigned long long cl_kept; /* hotloop.c: requests read with the GIL kept (appends2) */
    /* The C loop's WRITE cache (appends2; docs/decisions.md 39): what do_write's first
     * checks found for (wc_node, wc_fh) -- the objects (owned), the mode and the
     * handle's flags (its chattr flags were 0) -- reused by the next WRITE of the same
     * node and handle while the loop keeps it valid: only inside Engine.serve (wc_on),
     * emptied by wc_clear whenever the loop releases the GIL, serves anything but a
     * WRITE, or a WRITE called Python (wc_py) or did not complete. */
    int wc_on, wc_py;
    uint64_t wc_node, wc_fh;
    PyObject *wc_inode, *wc_mapping, *wc_pages, *wc_arena, *wc_budget;
    long long wc_mode, wc_hflags;
    unsigned long long n_wcached; /* WRITEs that used it */
    /* holcopy: (before, after) around a large WRITE's copy (Session._copy_unlock /
     * _copy_relock: the fs lock let go for it, fairness.py), or NULL */
    PyObject *copy_hooks;
    unsigned long long n_unlocked; /* copies made with the hooks' lock let go */
    /* appends3 (docs/decisions.md, "A cached WRITE's counters, times and buffers kept
     * in C"): what a run of cached WRITEs keeps here instead of in Python objects, folded
     * into them by wd_flush whenever the WRITE cache is emptied (wc_clear) or a WRITE is
     * about to run Python code (wd_python) -- so no Python code ever sees it unfolded */
    long long wd_writes, wd_major, wd_pages, wd_alloc; /* ops['write'], count_fault's */
    long long wd_req_n, wd_req_ns; /* requests[WRITE]'s [count, ns] (hotloop.c) */
    long long wd_now;              /* the last deferred WRITE's mtime = ctime, 0 none */
    PyObject *wd_requests;         /* Engine.serve's `requests` (borrowed, inside serve) */
    int wd_hit;                    /* the WRITE just served deferred its counts */
    /* the buffers of the cached file's last chunk and of the arena's segments, kept
     * exported from one cached WRITE to the next (released by wc_clear) */
    long long wc_ck;               /* the chunk held (wc_cfr non-NULL), else unused */
    int64_t *wc_cfr;
    uint8_t *wc_cfl;
    Py_buffer wc_frbuf, wc_flbuf;
    unsigned char *wc_seg[MAXSEGS];
    Py_ssize_t wc_seglen[MAXSEGS];
    Py_buffer wc_segbuf[MAXSEGS];
    unsigned long long n_deferred; /* WRITEs whose counts and times were deferred */
    /* the cached file's state a WRITE changes, kept here by cached WRITEs (wd_state 1)
     * and written back by wd_flush: the mapping's size, the budget's used_pages, the
     * page cache's gen and nrpages */
    int wd_state;
    long long wd_size, wd_used, wd_gen, wd_nrpages;
    /* clonec: the clone readers' loop (hotclone.c, Engine.serve_clone) */
    unsigned long long cc_entries, cc_served, cc_returned, cc_slow;
    long long cc_lock_ns, cc_handle_ns; /* read -> lock held, lock held -> answered */
    /* clonespin: the clone loop's own spins (CC_CSPIN), and those that found a request */
    unsigned long long cc_spins, cc_spin_hits;
} Engine;

static PyObject *s_inodes, *s_handles, *s_windows, *s_ino, *s_flags, *s_mode, *s_mapping,
    *s_fsflags, *s_size, *s_pages, *s_frames_, *s_flags_, *s_count_, *s_nrpages, *s_gen,
    *s_arena, *s_budget, *s_max_pages, *s_used_pages, *s_nshared, *s_replaying, *s_fps, *s_mvs,
    *s_alloc1, *s_alloc, *s_insert1, *s_insert_range, *s_set_flags, *s_lookup, *s_fstats,
    *s_faults, *s_read, *s_write, *s_minor, *s_major, *s_pages_allocated, *s_zero_pages,
    *s_atime_ns, *s_mtime_ns, *s_ctime_ns, *s_clock, *s_atime_mode, *s_noatime, *s_nodiratime,
    *s_relatime, *s_ops, *s_nlink, *s_uid, *s_gid, *s_rdev, *s_window_blocks, *s_dir,
    *s_getattr, *s_symlink_pages, *s_wins, *s_objs, *s_fd_, *s_target, *s_names_, *s_nlookup, *s_lookup_op,
    *s_nopen, *s_refresh, *s_release_op, *s_grants, *s_by_fh, *s_is_dir, *s_next_fh, *s_reclaimed,
    *s_open_op, *s_res_, *s_frames_allocated, *s__fstats;

static void wd_flush(Engine *e);

/* the chunk and segment buffers the cache holds, released (GIL held) */
static void wc_release_bufs(Engine *e)
{
    if (e->wc_cfr) {
        PyBuffer_Release(&e->wc_frbuf);
        PyBuffer_Release(&e->wc_flbuf);
        e->wc_cfr = NULL;
        e->wc_cfl = NULL;
    }
    for (int i = 0; i < MAXSEGS; i++)
        if (e->wc_seg[i]) {
            PyBuffer_Release(&e->wc_segbuf[i]);
            e->wc_seg[i] = NULL;
        }
}

static void wc_clear(Engine *e)
{
    wd_flush(e); /* first: it writes into the cached inode and mapping */
    wc_release_bufs(e);
    Py_CLEAR(e->wc_inode);
    Py_CLEAR(e->wc_mapping);
    Py_CLEAR(e->wc_pages);
    Py_CLEAR(e->wc_arena);
    Py_CLEAR(e->wc_budget);
}

static void put_u32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get_u32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get_u64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* ------------------------------------------------------------------ context */

/* One request's owned references and buffers, released together at the end. */
typedef struct ctx {
    Engine *e;
    PyObject *own[MAXOWN];
    int nown;
    Py_buffer bufs[MAXSEGS + 8];
    int nbufs;
    /* the reply */
    unsigned char hdr[OUT_HEADER + ENTRY_OUT + OPEN_OUT]; /* CREATE's entry + open */
    struct iovec iov[MAXPAGES + 1];
    int niov;
    size_t total;
} ctx_t;

static void ctx_release(ctx_t *c)
{
    for (int i = 0; i < c->nbufs; i++)
        PyBuffer_Release(&c->bufs[i]);
    c->nbufs = 0;
    for (int i = 0; i < c->nown; i++)
        Py_DECREF(c->own[i]);
    c->nown = 0;
}

/* keep a new reference until ctx_release; NULL passes through */
static PyObject *keep(ctx_t *c, PyObject *o)
{
    if (!o)
        return NULL;
    if (c->nown >= MAXOWN) {
        Py_DECREF(o);
        PyErr_SetString(PyExc_RuntimeError, "hotpath: too many references");
        return NULL;
    }
    c->own[c->nown++] = o;
    return o;
}

/*
 * Attribute access without the generic lookup (the attribute reads were most of
 * the engine's time): per (exact type, interned name), resolved once,
 *   - a __slots__ member (T_OBJECT_EX): read and written at its offset, as
 *     PyMember_GetOne / PyMember_SetOne do;
 *   - no attribute of that name on the type at all: the instance __dict__;
 *   - anything else (a property, a descriptor): PyObject_GetAttr / SetAttr.
 * The cache holds a reference to each type, so an address never means another.
 */
enum { K_GENERIC = 0, K_SLOT, K_DICT };
#define ACC_SIZE 256
typedef struct { PyTypeObject *tp; PyObject *name; int kind; Py_ssize_t off; } acc_t;
static acc_t accs[ACC_SIZE];

static acc_t *acc_of(PyObject *o, PyObject *name)
{
    PyTypeObject *tp = Py_TYPE(o);
    size_t h = (((uintptr_t)tp >> 4) * 31 + ((uintptr_t)name >> 4)) & (ACC_SIZE - 1);
    for (size_t i = 0; i < ACC_SIZE; i++) {
        acc_t *a = &accs[(h + i) & (ACC_SIZE - 1)];
        if (a->tp == tp && a->name == name)
            return a;
        if (a->tp == NULL) { /* resolve once */
            PyObject *d = _PyType_Lookup(tp, name); /* borrowed, no exception */
            a->kind = K_GENERIC;
            if (d && Py_IS_TYPE(d, &PyMemberDescr_Type)) {
                PyMemberDef *md = ((PyMemberDescrObject *)d)->d_member;
                if (md->type == T_OBJECT_EX && !(md->flags & READONLY)) {
                    a->kind = K_SLOT;
                    a->off = md->offset;
                }
            } else if (!d && tp->tp_dictoffset != 0) {
                a->kind = K_DICT;
            }
            Py_INCREF(tp);
            Py_INCREF(name);
            a->tp = tp;
            a->name = name;
            return a;
        }
    }
    return NULL; /* full: generic access */
}

/* o.name as a new reference; NULL with an exception set */
static PyObject *attr_get(PyObject *o, PyObject *name)
{
    acc_t *a = acc_of(o, name);
    if (a && a->kind == K_SLOT) {
        PyObject *v = *(PyObject **)((char *)o + a->off);
        if (v)
            return Py_NewRef(v);
        PyErr_SetObject(PyExc_AttributeError, name);
        return NULL;
    }
    if (a && a->kind == K_DICT) {
        PyObject *dict = PyObject_GenericGetDict(o, NULL);
        if (!dict)
            return NULL;
        PyObject *v = PyDict_GetItemWithError(dict, name);
        Py_DECREF(dict);
        if (v)
            return Py_NewRef(v);
        if (PyErr_Occurred())
            return NULL;
    }
    return PyObject_GetAttr(o, name);
}

/* o.name = v; -1 with an exception set */
static int attr_set(PyObject *o, PyObject *name, PyObject *v)
{
    acc_t *a = acc_of(o, name);
    if (a && a->kind == K_SLOT) {
        PyObject **slot = (PyObject **)((char *)o + a->off);
        PyObject *old = *slot;
        *slot = Py_NewRef(v);
        Py_XDECREF(old);
        return 0;
    }
    return PyObject_SetAttr(o, name, v); /* the instance dict's own fast path */
}

static PyObject *ga(ctx_t *c, PyObject *o, PyObject *name)
{
    return keep(c, attr_get(o, name));
}

/* an int attribute as long long; -1 on failure (exception set) */
static int ga_ll(PyObject *o, PyObject *name, long long *out)
{
    PyObject *v = attr_get(o, name);
    if (!v)
        return -1;
    if (!PyLong_Check(v)) {
        Py_DECREF(v);
        PyErr_SetString(PyExc_TypeError, "hotpath: not an int");
        return -1;
    }
    long long x = PyLong_AsLongLong(v);
    Py_DECREF(v);
    if (x == -1 && PyErr_Occurred())
        return -1;
    *out = x;
    return 0;
}

static int sa_ll(PyObject *o, PyObject *name, long long v)
{
    PyObject *nv = PyLong_FromLongLong(v);
    if (!nv)
        return -1;
    int r = attr_set(o, name, nv);
    Py_DECREF(nv);
    return r;
}

static int incr_attr(PyObject *o, PyObject *name, long long delta)
{
    long long v;
    if (ga_ll(o, name, &v) < 0)
        return -1;
    return sa_ll(o, name, v + delta);
}

/* d[key] += 1 on a dict (a collections.Counter: a missing key counts 0) */
static int incr_item(PyObject *d, PyObject *key)
{
    long long v = 0;
    PyObject *cur = PyDict_GetItemWithError(d, key);
    if (!cur && PyErr_Occurred())
        return -1;
    if (cur) {
        v = PyLong_AsLongLong(cur);
        if (v == -1 && PyErr_Occurred())
            return -1;
    }
    PyObject *nv = PyLong_FromLongLong(v + 1);
    if (!nv)
        return -1;
    int r = PyDict_SetItem(d, key, nv);
    Py_DECREF(nv);
    return r;
}

/* a C-contiguous buffer of n items of itemsize bytes, held until ctx_release */
static void *get_buf(ctx_t *c, PyObject *o, Py_ssize_t n, Py_ssize_t itemsize, int writable,
                     Py_ssize_t *len_out)
{
    if (c->nbufs >= (int)(sizeof c->bufs / sizeof c->bufs[0])) {
        PyErr_SetString(PyExc_RuntimeError, "hotpath: too many buffers");
        return NULL;
    }
    Py_buffer *v = &c->bufs[c->nbufs];
    int fl = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(o, v, fl) < 0)
        return NULL;
    c->nbufs++;
    if ((n >= 0 && v->len != n * itemsize) || v->itemsize != itemsize) {
        PyErr_SetString(PyExc_TypeError, "hotpath: unexpected buffer shape");
        return NULL;
    }
    if (len_out)
        *len_out = v->len;
    return v->buf;
}

/* ------------------------------------------------------------ page lookups */

typedef struct {
    PyObject *pages;                /* PageCache */
    PyObject *frames_d, *flags_d;   /* its chunk dicts (or an empty mapping proxy) */
    long long ck;                   /* the chunk cached below, -1 none */
    int64_t *cfr;
    uint8_t *cfl;
    Engine *hold; /* non-NULL: a chunk found is exported into the WRITE cache (appends3) */
} pc_t;

/* the chunk arrays fr, fl exported into the WRITE cache as its held chunk k (the one
 * held before released); 0, or -1 with an exception set (nothing held then) */
static int wc_hold_chunk(Engine *e, long long k, PyObject *fr, PyObject *fl)
{
    if (e->wc_cfr) {
        PyBuffer_Release(&e->wc_frbuf);
        PyBuffer_Release(&e->wc_flbuf);
        e->wc_cfr = NULL;
        e->wc_cfl = NULL;
    }
    int fl_ = PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE;
    if (PyObject_GetBuffer(fr, &e->wc_frbuf, fl_) < 0)
        return -1;
    if (PyObject_GetBuffer(fl, &e->wc_flbuf, fl_) < 0) {
        PyBuffer_Release(&e->wc_frbuf);
        return -1;
    }
    if (e->wc_frbuf.len != CHUNK * 8 || e->wc_frbuf.itemsize != 8 ||
        e->wc_flbuf.len != CHUNK || e->wc_flbuf.itemsize != 1) {
        PyBuffer_Release(&e->wc_frbuf);
        PyBuffer_Release(&e->wc_flbuf);
        PyErr_SetString(PyExc_TypeError, "hotpath: unexpected buffer shape");
        return -1;
    }
    e->wc_ck = k;
    e->wc_cfr = e->wc_frbuf.buf;
    e->wc_cfl = e->wc_flbuf.buf;
    return 0;
}

static int pc_open(ctx_t *c, PyObject *pages, pc_t *p)
{
    p->pages = pages;
    p->ck = -1;
    p->cfr = NULL;
    p->cfl = NULL;
    p->hold = NULL;
    p->frames_d = ga(c, pages, s_frames_);
    p->flags_d = p->frames_d ? ga(c, pages, s_flags_) : NULL;
    if (!p->flags_d)
        return -1;
    if (!PyDict_Check(p->frames_d) || !PyDict_Check(p->flags_d)) {
        /* an empty cache shares a read-only empty mapping (vmcore/pagecache.py) */
        if (PyObject_Size(p->frames_d) != 0 || PyObject_Size(p->flags_d) != 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "hotpath: unexpected chunk table");
            return -1;
        }
        p->frames_d = p->flags_d = NULL; /* no chunk at all */
    }
    return 0;
}

/* (frame, flags) of page pgoff: frame -1 for a hole; -2 on error (exception set) */
static int64_t pc_get(ctx_t *c, pc_t *p, long long pgoff, uint8_t *flags)
{
    long long k = pgoff >> CHUNK_SHIFT;
    if (k != p->ck) {
        p->ck = k;
        p->cfr = NULL;
        p->cfl = NULL;
        if (p->hold && p->hold->wc_cfr && p->hold->wc_ck == k) { /* held: no lookup */
            p->cfr = p->hold->wc_cfr;
            p->cfl = p->hold->wc_cfl;
        } else if (p->frames_d) {
            PyObject *key = PyLong_FromLongLong(k);
            if (!key)
                return -2;
            PyObject *fr = PyDict_GetItemWithError(p->frames_d, key);
            PyObject *fl = fr ? PyDict_GetItemWithError(p->flags_d, key) : NULL;
            Py_DECREF(key);
            if (PyErr_Occurred())
                return -2;
            if (fr && !fl) {
                PyErr_SetString(PyExc_KeyError, "hotpath: chunk without flags");
                return -2;
            }
            if (fr && p->hold) {
                if (wc_hold_chunk(p->hold, k, fr, fl) < 0)
                    return -2;
                p->cfr = p->hold->wc_cfr;
                p->cfl = p->hold->wc_cfl;
            } else if (fr) {
                p->cfr = get_buf(c, fr, CHUNK, 8, 1, NULL);
                if (!p->cfr)
                    return -2;
                p->cfl = get_buf(c, fl, CHUNK, 1, 1, NULL);
                if (!p->cfl)
                    return -2;
            }
        }
    }
    if (!p->cfr) {
        *flags = 0;
        return -1;
    }
    int i = (int)(pgoff & (CHUNK - 1));
    *flags = p->cfl[i];
    return p->cfr[i] < 0 ? -1 : p->cfr[i];
}

/* ------------------------------------------------------------- arena memory */

typedef struct {
    PyObject *mvs;    /* arena._mvs: one memoryview per segment */
    long long fps;    /* frames per segment */
    unsigned char *base[MAXSEGS];
    Py_ssize_t len[MAXSEGS];
    Engine *hold; /* non-NULL: segments exported into the WRITE cache (appends3) */
} arena_t;

static int arena_open(ctx_t *c, PyObject *arena, arena_t *a)
{
    memset(a, 0, sizeof *a);
    if (ga_ll(arena, s_fps, &a->fps) < 0)
        return -1;
    a->mvs = ga(c, arena, s_mvs);
    if (!a->mvs)
        return -1;
    if (!PyList_Check(a->mvs) || a->fps <= 0) {
        PyErr_SetString(PyExc_TypeError, "hotpath: unexpected arena");
        return -1;
    }
    return 0;
}

/* the 4096 bytes of frame f (> 0); NULL with an exception set when out of range */
static unsigned char *frame_mem(ctx_t *c, arena_t *a, int64_t f)
{
    if (f <= 0) {
        PyErr_SetString(PyExc_ValueError, "hotpath: frame 0 or negative");
        return NULL;
    }
    long long seg = f / a->fps, idx = f % a->fps;
    if (seg >= MAXSEGS || seg >= PyList_GET_SIZE(a->mvs)) {
        PyErr_SetString(PyExc_IndexError, "hotpath: frame beyond the arena");
        return NULL;
    }
    if (!a->base[seg] && a->hold && !a->hold->wc_seg[seg]) { /* held from now on */
        Engine *e = a->hold;
        Py_buffer *v = &e->wc_segbuf[seg];
        if (PyObject_GetBuffer(PyList_GET_ITEM(a->mvs, seg), v,
                               PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0)
            return NULL;
        if (v->itemsize != 1) {
            PyBuffer_Release(v);
            PyErr_SetString(PyExc_TypeError, "hotpath: unexpected buffer shape");
            return NULL;
        }
        e->wc_seg[seg] = v->buf;
        e->wc_seglen[seg] = v->len;
    }
    if (!a->base[seg] && a->hold) { /* the segment's memory, as the cache holds it */
        a->base[seg] = a->hold->wc_seg[seg];
        a->len[seg] = a->hold->wc_seglen[seg];
    }
    if (!a->base[seg]) {
        PyObject *mv = PyList_GET_ITEM(a->mvs, seg);
        Py_ssize_t len;
        unsigned char *b = get_buf(c, mv, -1, 1, 1, &len);
        if (!b)
            return NULL;
        a->base[seg] = b;
        a->len[seg] = len;
    }
    if ((idx + 1) * (long long)PAGE_SIZE > a->len[seg]) {
        PyErr_SetString(PyExc_IndexError, "hotpath: frame beyond its segment");
        return NULL;
    }
    return a->base[seg] + idx * PAGE_SIZE;
}

/* ------------------------------------------------------------- common checks */

/* The inode of nodeid when it is a regular file of plain vmcore types (its
 * Mapping, PageCache, Arena, Budget), else NULL (declined; no exception). */
typedef struct {
    PyObject *inode, *mapping, *pages, *arena, *budget;
    long long mode, fsflags, size;
} file_t;

#define DECLINE() do { e->last_decline = __LINE__; goto decline; } while (0)

/* 0 when ino is neither a window file nor a window's object (or there are no
 * windows): WindowTable.object_cached / object_changed do nothing for it then.
 * Otherwise nonzero: the window's page table and the coherence rules (Python). */
static int window_file(ctx_t *c, uint64_t nodeid)
{
    PyObject *w = ga(c, c->e->fs, s_windows);
    if (!w)
        return -1;
    if (w == Py_None)
        return 0;
    PyObject *wins = ga(c, w, s_wins), *objs = wins ? ga(c, w, s_objs) : NULL;
    if (!objs || !PyDict_Check(wins) || !PyDict_Check(objs))
        return -1;
    PyObject *key = PyLong_FromUnsignedLongLong(nodeid);
    if (!key)
        return -1;
    int r = PyDict_Contains(wins, key);
    if (r == 0)
        r = PyDict_Contains(objs, key);
    Py_DECREF(key);
    return r;
}

static PyObject *inode_of(ctx_t *c, PyObject *inodes, uint64_t nodeid)
{
    if (nodeid > (uint64_t)LLONG_MAX)
        return NULL;
    PyObject *key = PyLong_FromUnsignedLongLong(nodeid);
    if (!key)
        return NULL;
    PyObject *ino = PyDict_GetItemWithError(inodes, key);
    Py_DECREF(key);
    if (!ino)
        return NULL;
    Py_INCREF(ino);
    return keep(c, ino);
}

/* 0: a plain regular file, f filled; -1 declined (or error: the caller clears) */
static int open_file(ctx_t *c, PyObject *inodes, uint64_t nodeid, file_t *f)
{
    Engine *e = c->e;
    f->inode = inode_of(c, inodes, nodeid);
    if (!f->inode || (PyObject *)Py_TYPE(f->inode) != e->t_inode)
        return -1;
    if (ga_ll(f->inode, s_mode, &f->mode) < 0 || (f->mode & S_IFMT_) != S_IFREG_)
        return -1;
    if (ga_ll(f->inode, s_fsflags, &f->fsflags) < 0)
        return -1;
    f->mapping = ga(c, f->inode, s_mapping);
    if (!f->mapping || (PyObject *)Py_TYPE(f->mapping) != e->t_mapping)
        return -1;
    f->pages = ga(c, f->mapping, s_pages);
    if (!f->pages || (PyObject *)Py_TYPE(f->pages) != e->t_pages)
        return -1;
    f->arena = ga(c, f->mapping, s_arena);
    if (!f->arena || (PyObject *)Py_TYPE(f->arena) != e->t_arena)
        return -1;
    f->budget = ga(c, f->mapping, s_budget);
    if (!f->budget || (PyObject *)Py_TYPE(f->budget) != e->t_budget)
        return -1;
    PyObject *rp = ga(c, f->arena, s_replaying);
    if (!rp || rp != Py_False) /* a journal replay: frame bytes are not ours to touch */
        return -1;
    if (ga_ll(f->mapping, s_size, &f->size) < 0 || f->size < 0)
        return -1;
    return 0;
}

/* the handle fh must exist and be of nodeid (else EBADF, from Python); its flags */
static int handle_flags(ctx_t *c, uint64_t fh, uint64_t nodeid, long long *hflags)
{
    Engine *e = c->e;
    PyObject *handles = ga(c, e->fs, s_handles);
    if (!handles || !PyDict_Check(handles) || fh > (uint64_t)LLONG_MAX)
        return -1;
    PyObject *key = PyLong_FromUnsignedLongLong(fh);
    if (!key)
        return -1;
    PyObject *h = PyDict_GetItemWithError(handles, key);
    Py_DECREF(key);
    if (!h || (PyObject *)Py_TYPE(h) != e->t_handle)
        return -1;
    long long hino;
    if (ga_ll(h, s_ino, &hino) < 0 || (uint64_t)hino != nodeid)
        return -1;
    return ga_ll(h, s_flags, hflags);
}

/* The slot offsets of FaultStats's counters (a slots dataclass), resolved once per
 * type: count_fault adds to them in place, without the per-name attribute cache
 * (ten increments a WRITE were ~0.5 us, docs/performance.md change 30). */
enum { FS_FAULTS, FS_READ, FS_WRITE, FS_MINOR, FS_MAJOR, FS_PAGES, FS_ALLOC, FS_ZERO, FS_N };
static PyTypeObject *fs_tp;
static Py_ssize_t fs_off[FS_N];

static int stats_offsets(PyObject *s)
{
    if (Py_TYPE(s) == fs_tp)
        return 0;
    PyObject *names[FS_N] = {s_faults, s_read, s_write, s_minor, s_major, s_pages,
                             s_pages_allocated, s_zero_pages};
    Py_ssize_t off[FS_N];
    for (int i = 0; i < FS_N; i++) {
        acc_t *a = acc_of(s, names[i]);
        if (!a || a->kind != K_SLOT)
            return -1; /* not a slots class: the generic increments */
        off[i] = a->off;
    }
    memcpy(fs_off, off, sizeof off);
    fs_tp = Py_TYPE(s); /* acc_of holds a reference to the type */
    return 0;
}

/* the int in the slot at off += d; -1 with an exception set */
static int slot_add(PyObject *o, Py_ssize_t off, long long d)
{
    PyObject **slot = (PyObject **)((char *)o + off);
    PyObject *old = *slot;
    if (!old || !PyLong_CheckExact(old)) {
        PyErr_SetString(PyExc_TypeError, "hotpath: a fault counter is not an int");
        return -1;
    }
    long long v = PyLong_AsLongLong(old);
    if (v == -1 && PyErr_Occurred())
        return -1;
    PyObject *nv = PyLong_FromLongLong(v + d);
    if (!nv)
        return -1;
    *slot = nv;
    Py_DECREF(old);
    return 0;
}

/* fault counters of one fault: FAULT_STATS and the mapping's own (made on first use:
 * the ``fstats`` property when its ``_fstats`` slot is still None) */
static int count_fault(ctx_t *c, PyObject *mapping, int write, int major, long long pages,
                       long long allocated, long long zero)
{
    PyObject *fst = ga(c, mapping, s__fstats);
    if (fst == Py_None)
        fst = ga(c, mapping, s_fstats);
    if (!fst)
        return -1;
    PyObject *both[2] = {c->e->fault_stats, fst};
    for (int i = 0; i < 2; i++) {
        PyObject *s = both[i];
        if (stats_offsets(s) == 0) {
            if (slot_add(s, fs_off[FS_FAULTS], 1) < 0 ||
                slot_add(s, fs_off[write ? FS_WRITE : FS_READ], 1) < 0 ||
                slot_add(s, fs_off[major ? FS_MAJOR : FS_MINOR], 1) < 0 ||
                slot_add(s, fs_off[FS_PAGES], pages) < 0 ||
                (allocated && slot_add(s, fs_off[FS_ALLOC], allocated) < 0) ||
                (zero && slot_add(s, fs_off[FS_ZERO], zero) < 0))
                return -1;
            continue;
        }
        if (incr_attr(s, s_faults, 1) < 0 || incr_attr(s, write ? s_write : s_read, 1) < 0 ||
            incr_attr(s, major ? s_major : s_minor, 1) < 0 || incr_attr(s, s_pages, pages) < 0)
            return -1;
        if (allocated && incr_attr(s, s_pages_allocated, allocated) < 0)
            return -1;
        if (zero && incr_attr(s, s_zero_pages, zero) < 0)
            return -1;
    }
    return 0;
}

/* FaultStats s += a run of n write faults (major of them allocating), as n calls of
 * count_fault(write=1) would add: faults, write, major/minor, pages, pages_allocated */
static int fault_add(PyObject *s, long long n, long long major, long long pages,
                     long long allocated)
{
    if (stats_offsets(s) == 0)
        return (slot_add(s, fs_off[FS_FAULTS], n) < 0 || slot_add(s, fs_off[FS_WRITE], n) < 0 ||
                (major && slot_add(s, fs_off[FS_MAJOR], major) < 0) ||
                (n - major && slot_add(s, fs_off[FS_MINOR], n - major) < 0) ||
                slot_add(s, fs_off[FS_PAGES], pages) < 0 ||
                (allocated && slot_add(s, fs_off[FS_ALLOC], allocated) < 0)) ? -1 : 0;
    return (incr_attr(s, s_faults, n) < 0 || incr_attr(s, s_write, n) < 0 ||
            (major && incr_attr(s, s_major, major) < 0) ||
            (n - major && incr_attr(s, s_minor, n - major) < 0) ||
            incr_attr(s, s_pages, pages) < 0 ||
            (allocated && incr_attr(s, s_pages_allocated, allocated) < 0)) ? -1 : 0;
}

static int count_request_n(PyObject *requests, int op, long long n, long long ns);

/* SHMFS_WC_DEFER=0 (read at import): every WRITE counts and stamps its inode itself,
 * and nothing is held exported between WRITEs (the A/B of appends3) */
static int wd_on = 1;
static PyObject *time_ns_fn; /* time.time_ns: the clock read here as clock_gettime */

/*
 * Fold what cached WRITEs kept in C into the Python objects (appends3): ops['write'],
 * FAULT_STATS and the cached mapping's fault counters, Session.stats.requests[WRITE],
 * the cached inode's mtime and ctime.  Called by wc_clear -- whenever the loop lets the
 * GIL go, serves anything but a cached WRITE, or returns -- and by wd_python before a
 * WRITE runs Python code: between two folds only the engine's own C WRITEs ran, so
 * every reader of these objects sees what it saw before.  A failure (MemoryError
 * only: the objects are the types the cache checked) loses the counts, not the data:
 * counted in errors.  Any exception pending on entry is kept.
 */
static void wd_flush(Engine *e)
{
    if (!e->wd_writes && !e->wd_req_n && !e->wd_state)
        return;
    PyObject *et, *ev, *etb;
    PyErr_Fetch(&et, &ev, &etb);
    int bad = 0;
    if (e->wd_state) { /* first: the file's state, then what counts it */
        e->wd_state = 0;
        if (!e->wc_inode || sa_ll(e->wc_mapping, s_size, e->wd_size) < 0 ||
            sa_ll(e->wc_budget, s_used_pages, e->wd_used) < 0 ||
            sa_ll(e->wc_pages, s_gen, e->wd_gen) < 0 ||
            sa_ll(e->wc_pages, s_nrpages, e->wd_nrpages) < 0)
            bad = 1;
    }
    if (e->wd_writes && e->wc_inode) {
        PyObject *ops = attr_get(e->fs, s_ops);
        if (!ops || !PyDict_Check(ops)) {
            bad = 1;
        } else {
            PyObject *cur = PyDict_GetItemWithError(ops, s_write);
            long long v = cur ? PyLong_AsLongLong(cur) : 0;
            PyObject *nv = PyErr_Occurred() ? NULL : PyLong_FromLongLong(v + e->wd_writes);
            if (!nv || PyDict_SetItem(ops, s_write, nv) < 0)
                bad = 1;
            Py_XDECREF(nv);
        }
        Py_XDECREF(ops);
        PyObject *fst = attr_get(e->wc_mapping, s__fstats);
        if (fst == Py_None) {
            Py_DECREF(fst);
            fst = attr_get(e->wc_mapping, s_fstats);
        }
        if (!fst || fault_add(e->fault_stats, e->wd_writes, e->wd_major, e->wd_pages,
                              e->wd_alloc) < 0 ||
            fault_add(fst, e->wd_writes, e->wd_major, e->wd_pages, e->wd_alloc) < 0)
            bad = 1;
        Py_XDECREF(fst);
        PyObject *now = PyLong_FromLongLong(e->wd_now);
        if (!now || attr_set(e->wc_inode, s_mtime_ns, now) < 0 ||
            attr_set(e->wc_inode, s_ctime_ns, now) < 0)
            bad = 1;
        Py_XDECREF(now);
    }
    if (e->wd_req_n && e->wd_requests &&
        count_request_n(e->wd_requests, OP_WRITE, e->wd_req_n, e->wd_req_ns) < 0)
        bad = 1;
    e->wd_writes = e->wd_major = e->wd_pages = e->wd_alloc = 0;
    e->wd_req_n = e->wd_req_ns = 0;
    if (bad) {
        PyErr_Clear();
        e->errors++;
    }
    PyErr_Restore(et, ev, etb);
}

/* a WRITE is about to run Python code (or let the GIL go): fold first, and the cache
 * is emptied when the WRITE ends (decisions 39) */
static void wd_python(Engine *e)
{
    e->wc_py = 1;
    wd_flush(e);
}

static int count_op(ctx_t *c, PyObject *name)
{
    PyObject *ops = ga(c, c->e->fs, s_ops);
    if (!ops)
        return -1;
    if (!PyDict_Check(ops)) {
        PyErr_SetString(PyExc_TypeError, "hotpath: ShmFs._ops is not a Counter");
        return -1;
    }
    return incr_item(ops, name);
}

static PyObject *now_ns(ctx_t *c)
{
    PyObject *clock = ga(c, c->e->fs, s_clock);
    if (!clock)
        return NULL;
    if (!PyCFunction_Check(clock)) /* a Python clock (tests): its code may let go of the GIL */
        wd_python(c->e);
    PyObject *t = keep(c, PyObject_CallNoArgs(clock));
    if (t && !PyLong_Check(t)) {
        PyErr_SetString(PyExc_TypeError, "hotpath: the clock gave no int");
        return NULL;
    }
    return t;
}

/* The mount's atime mode as FsCore reads it (fs.atime_mode()): noatime, relatime.
 * A MountFlagsWatch is read without the call: "if self._fd >= 0 and
 * self._poll.poll(0): self.refresh()" (a POLLPRI poll of mountinfo), "return
 * self.mode" -- refresh() called here when our poll saw the change; any other
 * callable is called. 0, or -1 with an exception. */
static int atime_mode(ctx_t *c, int *noatime, int *relatime)
{
    Engine *e = c->e;
    PyObject *mode_fn = ga(c, e->fs, s_atime_mode);
    if (!mode_fn)
        return -1;
    PyObject *mode = NULL;
    if (e->t_watch && (PyObject *)Py_TYPE(mode_fn) == e->t_watch) {
        long long wfd;
        if (ga_ll(mode_fn, s_fd_, &wfd) < 0)
            return -1;
        int changed = 0;
        if (wfd >= 0 && wfd <= INT_MAX) {
            struct pollfd pf = {(int)wfd, POLLPRI, 0};
            int r;
            do {
                r = poll(&pf, 1, 0);
            } while (r < 0 && errno == EINTR);
            changed = r != 0; /* an error too: the Python call reports it */
        }
        if (changed) { /* our poll consumed the event (mounts_poll moves poll_event),
                        * so __call__'s own poll would see nothing: refresh() itself */
            PyObject *r = keep(c, PyObject_CallMethodNoArgs(mode_fn, s_refresh));
            if (!r)
                return -1;
        }
        mode = ga(c, mode_fn, s_mode);
    } else {
        mode = keep(c, PyObject_CallNoArgs(mode_fn));
    }
    if (!mode)
        return -1;
    PyObject *na = ga(c, mode, s_noatime), *rel = na ? ga(c, mode, s_relatime) : NULL;
    if (!rel)
        return -1;
    *noatime = PyObject_IsTrue(na);
    *relatime = PyObject_IsTrue(rel);
    return (*noatime < 0 || *relatime < 0) ? -1 : 0;
}

static long long floordiv(long long a, long long b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

static void reply_header(ctx_t *c, uint64_t unique, size_t payload)
{
    put_u32(c->hdr, (uint32_t)(OUT_HEADER + payload));
    put_u32(c->hdr + 4, 0);
    put_u64(c->hdr + 8, unique);
    c->iov[0].iov_base = c->hdr;
    c->iov[0].iov_len = OUT_HEADER;
    c->niov = 1;
    c->total = OUT_HEADER + payload;
}

/* ------------------------------------------------------------------ READ */

/* The READ's and WRITE's common look: nodeid is neither a window file nor a
 * window's object (window_file) and is a plain regular file (open_file, f filled).
 * 0 ok; -1 declined, e->last_decline set here (the caller clears any error). */
static int plain_file(ctx_t *c, uint64_t nodeid, file_t *f)
{
    Engine *e = c->e;
    if (window_file(c, nodeid) != 0) /* the window's page table and coherence (Python) */
        DECLINE();
    PyObject *inodes = ga(c, e->fs, s_inodes);
    if (!inodes || !PyDict_Check(inodes))
        DECLINE();
    if (open_file(c, inodes, nodeid, f) < 0)
        DECLINE();
    return 0;
decline:
    return -1;
}

/* 1 answered (reply in c), 0 declined, -1 failed after a change (exception set) */
static int do_read(ctx_t *c, const unsigned char *m, Py_ssize_t n, uint64_t unique,
                   uint64_t nodeid)
{
    Engine *e = c->e;
    file_t f;
    pc_t p;
    arena_t a;
    if (n != IN_HEADER + RW_IN)
        DECLINE();
    const unsigned char *in = m + IN_HEADER;
    uint64_t fh = get_u64(in), off = get_u64(in + 8);
    uint32_t size = get_u32(in + 16);
    if (size > MAXSIZE || off > (uint64_t)LLONG_MAX)
        DECLINE();
    /* ---- phase 1: look and decide, nothing changes ---- */
    if (plain_file(c, nodeid, &f) < 0) /* a window's: object_cached (Python) */
        goto decline;
    long long hflags;
    if (handle_flags(c, fh, nodeid, &hflags) < 0)
        DECLINE();
    uint64_t want = off + size; /* off <= LLONG_MAX, size <= 1 MiB: no wrap in 64 bits */
    long long end = want < (uint64_t)f.size ? (long long)want : f.size;
    long long len = end - (long long)off;
    long long first = 0, nr = 0, nzero = 0;
    reply_header(c, unique, 0);
    if ((long long)off < end && size) {
        if (pc_open(c, f.pages, &p) < 0 || arena_open(c, f.arena, &a) < 0)
            DECLINE();
        first = (long long)off >> PAGE_SHIFT;
        nr = ((end - 1) >> PAGE_SHIFT) - first + 1;
        long long pos = (long long)off;
        for (long long i = 0; i < nr; i++) {
            uint8_t fl;
            int64_t fr = pc_get(c, &p, first + i, &fl);
            if (fr == -2)
                DECLINE();
            /* the bytes of this page: never (page + 1) << 12, which wraps at 2^63 */
            size_t in_page = (size_t)(pos & (PAGE_SIZE - 1));
            size_t k = PAGE_SIZE - in_page;
            if ((long long)k > end - pos)
                k = (size_t)(end - pos);
            long long pend = pos + (long long)k;
            const unsigned char *src;
            if (fr < 0 || !(fl & PG_UPTODATE)) {
                src = zero_page;
                nzero++;
            } else {
                src = frame_mem(c, &a, fr);
                if (!src)
                    DECLINE();
            }
            struct iovec *last = &c->iov[c->niov - 1];
            if (c->niov > 1 && (const unsigned char *)last->iov_base + last->iov_len ==
                                   src + in_page && src != zero_page)
                last->iov_len += k; /* contiguous frames of one segment: one iovec */
            else {
                c->iov[c->niov].iov_base = (void *)(src + in_page);
                c->iov[c->niov].iov_len = k;
                c->niov++;
            }
            pos = pend;
        }
        put_u32(c->hdr, (uint32_t)(OUT_HEADER + len));
        c->total = OUT_HEADER + (size_t)len;
    }
    /* touch_atime's inputs, read before any change */
    long long atime, mtime, ctime;
    if (ga_ll(f.inode, s_atime_ns, &atime) < 0 || ga_ll(f.inode, s_mtime_ns, &mtime) < 0 ||
        ga_ll(f.inode, s_ctime_ns, &ctime) < 0)
        DECLINE();

    /* ---- phase 2: the changes, in the Python path's order ---- */
    if (count_op(c, s_read) < 0)
        return -1;
    if (nr && count_fault(c, f.mapping, 0, 0, nr, 0, nzero) < 0)
        return -1;
    if (!(f.fsflags & FS_NOATIME_FL)) { /* FsCore._touch_atime */
        PyObject *now = now_ns(c);
        if (!now)
            return -1;
        int noatime, relatime;
        if (atime_mode(c, &noatime, &relatime) < 0)
            return -1;
        long long t = PyLong_AsLongLong(now);
        if (t == -1 && PyErr_Occurred())
            return -1;
        int update = !noatime; /* nodiratime: not a directory */
        if (update && relatime)
            update = mtime >= atime || ctime >= atime ||
                     floordiv(t, 1000000000LL) - floordiv(atime, 1000000000LL) >= e->relatime_s;
        if (update && atime != t && attr_set(f.inode, s_atime_ns, now) < 0)
            return -1;
    }
    e->n_read++;
    e->bytes_read += (unsigned long long)(c->total - OUT_HEADER);
    return 1;
decline:
    PyErr_Clear();
    return 0;
}

/* ------------------------------------------------------------------ WRITE */

/* data -> bytes [pos, end) of the pages dst[0..nr) (Arena.store1 / copy_in) */
static void copy_in(unsigned char *const *dst, long long nr, long long pos, long long end,
                    const unsigned char *data)
{
    long long at = pos;
    for (long long i = 0; i < nr && at < end; i++) {
        size_t in_page = (size_t)(at & (PAGE_SIZE - 1));
        size_t k = PAGE_SIZE - in_page;
        if ((long long)k > end - at)
            k = (size_t)(end - at);
        memcpy(dst[i] + in_page, data + (at - pos), k);
        at += (long long)k;
    }
}

/* Arena.alloc1() for one new page: the reserve's next frame popped here, as
 * alloc1 pops it ("res.pop(); frames_allocated += 1"), without the Python call;
 * an empty reserve (or none: reserve off) is alloc1's own business (the batch
 * refill, the free runs, populate-ahead).  The frame as an int (owned by c), or
 * NULL with an exception.  docs/performance.md change 30; SHMFS_CRESERVE=0 (read
 * at import) always calls alloc1 (A/B). */
static int c_reserve = 1;

static PyObject *arena_pop(ctx_t *c, PyObject *arena)
{
    PyObject *res = c_reserve ? ga(c, arena, s_res_) : NULL;
    if (c_reserve && !res)
        return NULL;
    if (res && PyList_CheckExact(res) && PyList_GET_SIZE(res) > 0) {
        Py_ssize_t k = PyList_GET_SIZE(res);
        PyObject *fo = PyList_GET_ITEM(res, k - 1);
        if (!PyLong_CheckExact(fo)) {
            PyErr_SetString(PyExc_TypeError, "hotpath: a reserved frame is no int");
            return NULL;
        }
        Py_INCREF(fo);
        if (!keep(c, fo))
            return NULL;
        if (PyList_SetSlice(res, k - 1, k, NULL) < 0 ||
            incr_attr(arena, s_frames_allocated, 1) < 0)
            return NULL;
        c->e->n_respop++;
        return fo;
    }
    wd_python(c->e);
    return keep(c, PyObject_CallMethodNoArgs(arena, s_alloc1));
}

/* o.name = v, or its copy in the engine while cached WRITEs keep the state (wd_state:
 * wd_python may have folded it back meanwhile, then the object) */
#define WD_SET(field, o, name, v) (e->wd_state ? (e->field = (v), 0) : sa_ll(o, name, v))

static int do_write(ctx_t *c, const unsigned char *m, Py_ssize_t n, uint64_t unique,
                    uint64_t nodeid)
{
    Engine *e = c->e;
    file_t f;
    pc_t p;
    arena_t a;
    if (n < IN_HEADER + RW_IN)
        DECLINE();
    const unsigned char *in = m + IN_HEADER;
    uint64_t fh = get_u64(in), off = get_u64(in + 8);
    uint32_t size = get_u32(in + 16), wflags = get_u32(in + 20);
    const unsigned char *data = in + RW_IN;
    if ((Py_ssize_t)size != n - IN_HEADER - RW_IN || size == 0)
        DECLINE();
    if (size > MAXSIZE)
        DECLINE();
    if (wflags & ~(uint32_t)WRITE_KILL_SUIDGID) /* write-back (WRITE_CACHE), lock owner */
        DECLINE();
    /* ---- phase 1 ---- */
    long long hflags;
    int cached = 0; /* served from the WRITE cache */
    e->wc_py = 0;
    e->wd_hit = 0;
    if (e->wc_on && e->wc_inode && e->wc_node == nodeid && e->wc_fh == fh) {
        /* the C loop's cache: every check below passed for this node and handle, and
         * nothing but C WRITEs of the engine ran since (decisions 39) */
        f.inode = keep(c, Py_NewRef(e->wc_inode));
        f.mapping = keep(c, Py_NewRef(e->wc_mapping));
        f.pages = keep(c, Py_NewRef(e->wc_pages));
        f.arena = keep(c, Py_NewRef(e->wc_arena));
        f.budget = keep(c, Py_NewRef(e->wc_budget));
        if (!f.inode || !f.mapping || !f.pages || !f.arena || !f.budget)
            DECLINE();
        f.mode = e->wc_mode;
        f.fsflags = 0;
        hflags = e->wc_hflags;
        if (e->wd_state) /* kept here by the cached WRITEs before this one */
            f.size = e->wd_size;
        else if (ga_ll(f.mapping, s_size, &f.size) < 0 || f.size < 0)
            DECLINE();
        e->n_wcached++;
        cached = 1;
    } else {
        /* first: what cached WRITEs of another handle or node left in C goes back into
         * the objects before this WRITE reads them (i_size: another handle appending
         * to the same file; decisions 45) */
        if (e->wc_on)
            wc_clear(e);
        if (plain_file(c, nodeid, &f) < 0) /* a window's: object_changed (Python) */
            goto decline;
        if (f.fsflags) /* chattr flags: the Python path */
            DECLINE();
        if (handle_flags(c, fh, nodeid, &hflags) < 0)
            DECLINE();
        if (e->wc_on) {
            wc_clear(e);
            e->wc_node = nodeid;
            e->wc_fh = fh;
            e->wc_inode = Py_NewRef(f.inode);
            e->wc_mapping = Py_NewRef(f.mapping);
            e->wc_pages = Py_NewRef(f.pages);
            e->wc_arena = Py_NewRef(f.arena);
            e->wc_budget = Py_NewRef(f.budget);
            e->wc_mode = f.mode;
            e->wc_hflags = hflags;
        }
    }
    if ((wflags & WRITE_KILL_SUIDGID) && (f.mode & (S_ISUID_ | S_ISGID_)))
        DECLINE(); /* privs.modify_kill needs the caller's groups */
    /* appends3: the cache holds this node and handle now: its chunk and segment
     * buffers stay exported; a WRITE served from it leaves its counts and times in C
     * (wd_flush) */
    int hold = wd_on && e->wc_on && e->wc_inode && e->wc_node == nodeid && e->wc_fh == fh;
    int defer = hold && cached;
    long long pos = (hflags & O_APPEND_) ? f.size : (long long)off;
    if (pos < 0 || (unsigned long long)pos >= (unsigned long long)e->max_file_size ||
        (unsigned long long)pos + size > (unsigned long long)e->max_file_size)
        DECLINE(); /* EFBIG, or clipped at MAX_FILE_SIZE */
    long long end = pos + size;
    long long first = pos >> PAGE_SHIFT, nr = ((end - 1) >> PAGE_SHIFT) - first + 1;
    long long nshared;
    if (ga_ll(f.arena, s_nshared, &nshared) < 0 || nshared != 0)
        DECLINE(); /* copy-on-write frames somewhere: break_shares (Python) */
    if (pc_open(c, f.pages, &p) < 0 || arena_open(c, f.arena, &a) < 0)
        DECLINE();
    if (hold) {
        p.hold = e;
        a.hold = e;
    }
    long long nholes = 0, notboth = 0;
    unsigned char *dst[MAXPAGES]; /* the pages' bytes: final here when nothing is allocated */
    for (long long i = 0; i < nr; i++) {
        uint8_t fl;
        int64_t fr = pc_get(c, &p, first + i, &fl);
        if (fr == -2)
            DECLINE();
        if (fr < 0)
            nholes++;
        else {
            if (!(dst[i] = frame_mem(c, &a, fr)))
                DECLINE();
            if ((fl & PG_BOTH) != PG_BOTH)
                notboth++;
        }
    }
    long long max_pages, used;
    if (ga_ll(f.budget, s_max_pages, &max_pages) < 0)
        DECLINE();
    if (e->wd_state)
        used = e->wd_used;
    else if (ga_ll(f.budget, s_used_pages, &used) < 0)
        DECLINE();
    if (nholes && max_pages && max_pages - used < nholes)
        DECLINE(); /* a short write or ENOSPC: the Python path answers it */
    long long gen, nrpages;
    if (e->wd_state) {
        gen = e->wd_gen;
        nrpages = e->wd_nrpages;
    } else if (ga_ll(f.pages, s_gen, &gen) < 0 || ga_ll(f.pages, s_nrpages, &nrpages) < 0) {
        DECLINE();
    }
    if (defer && !e->wd_state) { /* from here on kept in C until wd_flush */
        e->wd_size = f.size;
        e->wd_used = used;
        e->wd_gen = gen;
        e->wd_nrpages = nrpages;
        e->wd_state = 1;
    }

    /* ---- phase 2: Mapping.write's order: i_size, charge, frames, index, copy ---- */
    if (!defer && count_op(c, s_write) < 0) /* deferred: by wd_flush, or below */
        return -1;
    if (end > f.size && WD_SET(wd_size, f.mapping, s_size, end) < 0)
        return -1;
    if (nholes && WD_SET(wd_used, f.budget, s_used_pages, used + nholes) < 0)
        return -1;
    int direct = 0; /* dst[0] set here: the new frame in a chunk the first pass had */
    if (nr == 1) { /* fault.write1 */
        if (nholes) {
            PyObject *fo = arena_pop(c, f.arena);
            if (!fo)
                return -1;
            long long frame = PyLong_AsLongLong(fo);
            if (frame == -1 && PyErr_Occurred())
                return -1;
            uint8_t fl;
            if (pc_get(c, &p, first, &fl) == -2)
                return -1;
            long long k = first >> CHUNK_SHIFT;
            if (p.cfr) { /* PageCache.insert1 into an existing chunk */
                int i = (int)(first & (CHUNK - 1));
                PyObject *key = PyLong_FromLongLong(k);
                if (!key)
                    return -1;
                PyObject *cnt_d = ga(c, f.pages, s_count_);
                PyObject *cnt = cnt_d && PyDict_Check(cnt_d) ?
                    PyDict_GetItemWithError(cnt_d, key) : NULL;
                long long cv = cnt ? PyLong_AsLongLong(cnt) : -1;
                PyObject *nv = cv >= 0 ? PyLong_FromLongLong(cv + 1) : NULL;
                int r = nv ? PyDict_SetItem(cnt_d, key, nv) : -1;
                Py_XDECREF(nv);
                Py_DECREF(key);
                if (r < 0) {
                    if (!PyErr_Occurred())
                        PyErr_SetString(PyExc_RuntimeError, "hotpath: chunk count missing");
                    return -1;
                }
                p.cfr[i] = frame;
                p.cfl[i] = PG_BOTH;
                if (WD_SET(wd_nrpages, f.pages, s_nrpages, nrpages + 1) < 0 ||
                    WD_SET(wd_gen, f.pages, s_gen, gen + 1) < 0)
                    return -1;
                /* the frame's bytes: no second lookup (the chunk arrays are the ones
                 * just written; a refill may have grown the arena, which frame_mem
                 * sees: its segment list is the arena's own, read per frame) */
                if (!(dst[0] = frame_mem(c, &a, frame)))
                    return -1;
                direct = 1;
            } else {
                wd_python(e);
                PyObject *r = keep(c, PyObject_CallMethodObjArgs(
                    f.pages, s_insert1, keep(c, PyLong_FromLongLong(first)), fo,
                    keep(c, PyLong_FromLong(PG_BOTH)), NULL));
                if (!r)
                    return -1;
            }
        } else if (notboth) { /* set_flags(pgoff, 1, UPTODATE|DIRTY) */
            uint8_t fl;
            pc_get(c, &p, first, &fl);
            p.cfl[first & (CHUNK - 1)] |= PG_BOTH;
            if (WD_SET(wd_gen, f.pages, s_gen, gen + 1) < 0)
                return -1;
        }
    } else { /* fault(): the allocating path for a run */
        wd_python(e); /* alloc, lookup, insert_range, set_flags: Python's */
        if (nholes) {
            PyObject *cnt = keep(c, PyLong_FromLongLong(nholes));
            PyObject *newf = cnt ? keep(c, PyObject_CallMethodOneArg(f.arena, s_alloc, cnt)) : NULL;
            if (!newf)
                return -1;
            PyObject *ins = newf;
            if (nholes != nr) { /* holes get the new frames, resident pages -1 */
                PyObject *lk = keep(c, PyObject_CallMethod(f.pages, "lookup", "LL", first, nr));
                if (!lk || !PyTuple_Check(lk) || PyTuple_GET_SIZE(lk) != 2) {
                    if (!PyErr_Occurred())
                        PyErr_SetString(PyExc_TypeError, "hotpath: lookup gave no pair");
                    return -1;
                }
                ins = PyTuple_GET_ITEM(lk, 0);
                int64_t *iv = get_buf(c, ins, nr, 8, 1, NULL);
                int64_t *nv = iv ? get_buf(c, newf, nholes, 8, 0, NULL) : NULL;
                if (!nv)
                    return -1;
                long long j = 0;
                for (long long i = 0; i < nr; i++)
                    iv[i] = iv[i] < 0 ? nv[j++] : -1;
            }
            PyObject *r = keep(c, PyObject_CallMethodObjArgs(
                f.pages, s_insert_range, keep(c, PyLong_FromLongLong(first)), ins,
                keep(c, PyLong_FromLong(PG_BOTH)), NULL));
            if (!r)
                return -1;
        }
        /* fault(): (pflags & bits) != bits over the run, its holes' zero flags included */
        if (nholes < nr && (notboth || nholes)) {
            PyObject *r = keep(c, PyObject_CallMethod(f.pages, "set_flags", "LLi", first, nr,
                                                      PG_BOTH));
            if (!r)
                return -1;
        }
    }
    /* the copy: Arena.store1 / copy_in; with new pages, their frames are looked up
     * again (the chunk tables may have changed, the arena may have grown) */
    if (nholes && !direct &&
        (pc_open(c, f.pages, &p) < 0 || arena_open(c, f.arena, &a) < 0))
        return -1;
    for (long long i = 0; nholes && !direct && i < nr; i++) {
        uint8_t fl;
        int64_t fr = pc_get(c, &p, first + i, &fl);
        if (fr < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_RuntimeError, "hotpath: written page not resident");
            return -1;
        }
        dst[i] = frame_mem(c, &a, fr);
        if (!dst[i])
            return -1;
    }
    if (size >= NOGIL_BYTES) {
        e->nogil++;
        wd_python(e); /* other threads may run meanwhile */
        /* holcopy: the frames are allocated and indexed; before() may let go of the
         * session's fs lock for the copy (True) -- only for a chunk of a large WRITE,
         * while only requests that touch no file data may take it (fairness.py,
         * Fairness._copy_unlock: why nothing frees or reads these frames meanwhile);
         * after() takes it back before anything else changes */
        PyObject *hooks = e->copy_hooks ? keep(c, Py_NewRef(e->copy_hooks)) : NULL;
        PyObject *un = hooks ? keep(c, PyObject_CallNoArgs(PyTuple_GET_ITEM(hooks, 0))) : NULL;
        if (hooks && !un)
            return -1;
        Py_BEGIN_ALLOW_THREADS
        copy_in(dst, nr, pos, end, data);
        Py_END_ALLOW_THREADS
        if (un == Py_True) {
            e->n_unlocked++;
            if (!keep(c, PyObject_CallNoArgs(PyTuple_GET_ITEM(hooks, 1))))
                return -1;
        }
    } else {
        copy_in(dst, nr, pos, end, data);
    }
    PyObject *clock = defer && !e->wc_py ? ga(c, e->fs, s_clock) : NULL;
    if (clock && clock == time_ns_fn) {
        /* appends3: counted and stamped when the cache is emptied (wd_flush): the
         * clock is time.time_ns, read here as it reads it */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        e->wd_now = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
        e->wd_writes++;
        e->wd_major += nholes > 0;
        e->wd_pages += nr;
        e->wd_alloc += nholes;
        e->wd_hit = 1;
        e->n_deferred++;
    } else {
        if (defer && count_op(c, s_write) < 0)
            return -1;
        if (count_fault(c, f.mapping, 1, nholes > 0, nr, nholes, 0) < 0)
            return -1;
        PyObject *now = now_ns(c);
        if (!now || attr_set(f.inode, s_mtime_ns, now) < 0 ||
            attr_set(f.inode, s_ctime_ns, now) < 0)
            return -1;
    }
    if (e->wc_py) /* Python ran (or the GIL was let go): the next WRITE looks again */
        wc_clear(e);
    reply_header(c, unique, 8); /* fuse_write_out */
    put_u32(c->hdr + OUT_HEADER, size);
    put_u32(c->hdr + OUT_HEADER + 4, 0);
    c->iov[0].iov_len = OUT_HEADER + 8;
    e->n_write++;
    e->bytes_written += size;
    return 1;
decline:
    PyErr_Clear();
    return 0;
}

/* ---------------------------------------------------------------- GETATTR */

/* struct fuse_attr (88 bytes at t) of an inode, as Inode.attr + codec._attr_fields
 * make it; 0, or -1 to decline (no exception left) */
static int attr_of(ctx_t *c, PyObject *inode, unsigned char *t)
{
    Engine *e = c->e;
    long long ino, mode, nlink, uid, gid, rdev, at, mt, ct, size, blocks;
    if ((PyObject *)Py_TYPE(inode) != e->t_inode)
        goto decline;
    if (ga_ll(inode, s_ino, &ino) < 0 || ga_ll(inode, s_mode, &mode) < 0)
        goto decline;
    PyObject *wb = ga(c, inode, s_window_blocks);
    if (!wb || wb != Py_None) /* a window's st_blocks: the Python path */
        goto decline;
    PyObject *mapping = ga(c, inode, s_mapping);
    if (!mapping)
        goto decline;
    if (mapping != Py_None) { /* Inode.size / .blocks: the mapping's */
        if ((PyObject *)Py_TYPE(mapping) != e->t_mapping)
            goto decline;
        PyObject *pages = ga(c, mapping, s_pages);
        if (!pages || (PyObject *)Py_TYPE(pages) != e->t_pages)
            goto decline;
        long long nrp;
        if (ga_ll(mapping, s_size, &size) < 0 || ga_ll(pages, s_nrpages, &nrp) < 0)
            goto decline;
        blocks = nrp << (PAGE_SHIFT - 9);
    } else {
        PyObject *dir = ga(c, inode, s_dir);
        if (!dir)
            goto decline;
        if (dir != Py_None) {
            if ((PyObject *)Py_TYPE(dir) != e->t_dir)
                goto decline;
            Py_ssize_t entries = PyObject_Size(dir);
            if (entries < 0)
                goto decline;
            size = e->dirent_size * (2 + (long long)entries);
        } else {
            PyObject *target = ga(c, inode, s_target);
            if (!target)
                goto decline;
            if (target == Py_None)
                size = 0;
            else if (PyBytes_Check(target))
                size = PyBytes_GET_SIZE(target);
            else
                goto decline;
        }
        long long spages;
        if (ga_ll(inode, s_symlink_pages, &spages) < 0)
            goto decline;
        blocks = spages * (PAGE_SIZE / 512);
    }
    if (ga_ll(inode, s_nlink, &nlink) < 0 || ga_ll(inode, s_uid, &uid) < 0 ||
        ga_ll(inode, s_gid, &gid) < 0 || ga_ll(inode, s_rdev, &rdev) < 0 ||
        ga_ll(inode, s_atime_ns, &at) < 0 || ga_ll(inode, s_mtime_ns, &mt) < 0 ||
        ga_ll(inode, s_ctime_ns, &ct) < 0)
        goto decline;
    if (ino < 0 || size < 0 || blocks < 0 || nlink < 0)
        goto decline; /* struct.error in Python's pack: let it answer */
    const long long NS = 1000000000LL;
    memset(t, 0, 88);
    put_u64(t, (uint64_t)ino);
    put_u64(t + 8, (uint64_t)size);
    put_u64(t + 16, (uint64_t)blocks);
    put_u64(t + 24, (uint64_t)floordiv(at, NS));
    put_u64(t + 32, (uint64_t)floordiv(mt, NS));
    put_u64(t + 40, (uint64_t)floordiv(ct, NS));
    put_u32(t + 48, (uint32_t)(at - floordiv(at, NS) * NS));
    put_u32(t + 52, (uint32_t)(mt - floordiv(mt, NS) * NS));
    put_u32(t + 56, (uint32_t)(ct - floordiv(ct, NS) * NS));
    put_u32(t + 60, (uint32_t)mode);
    put_u32(t + 64, nlink > 0xFFFFFFFFLL ? 0xFFFFFFFFu : (uint32_t)nlink);
    put_u32(t + 68, (uint32_t)uid);
    put_u32(t + 72, (uint32_t)gid);
    put_u32(t + 76, (uint32_t)rdev);
    put_u32(t + 80, PAGE_SIZE);
    return 0;
decline:
    PyErr_Clear();
    return -1;
}

static int do_getattr(ctx_t *c, const unsigned char *m, Py_ssize_t n, uint64_t unique,
                      uint64_t nodeid)
{
    Engine *e = c->e;
    if (n != IN_HEADER + GETATTR_IN)
        DECLINE();
    PyObject *inodes = ga(c, e->fs, s_inodes);
    if (!inodes || !PyDict_Check(inodes))
        DECLINE();
    PyObject *inode = inode_of(c, inodes, nodeid);
    unsigned char *o = c->hdr + OUT_HEADER;
    if (!inode || attr_of(c, inode, o + 16) < 0)
        DECLINE();
    /* ---- phase 2 ---- */
    if (count_op(c, s_getattr) < 0)
        return -1;
    put_u64(o, (uint64_t)e->attr_sec); /* fuse_attr_out: attr_valid, nsec, dummy */
    put_u32(o + 8, (uint32_t)e->attr_nsec);
    put_u32(o + 12, 0);
    reply_header(c, unique, ATTR_OUT);
    c->iov[0].iov_len = OUT_HEADER + ATTR_OUT;
    e->n_getattr++;
    return 1;
decline:
    PyErr_Clear();
    return 0;
}

/* ----------------------------------------------------------------- LOOKUP */

/* A miss in a directory (NamespaceOps.lookup raises ENOENT): with negative_timeout,
 * Operations._lookup_reply answers a negative entry (nodeid 0, the entry timeout,
 * a zero attr); without, Operations._failed counts ENOENT in its Counter and
 * answers -ENOENT. Either way `lookup` was counted first (the @counted wrapper).
 * Declined when the engine was not given the Counter (hotpath.engine's errors). */
static int lookup_miss(ctx_t *c, uint64_t unique)
{
    Engine *e = c->e;
    if (e->neg_sec < 0 && !e->errors_counter) {
        e->last_decline = __LINE__;
        return 0;
    }
    /* ---- phase 2 ---- */
    if (count_op(c, s_lookup_op) < 0)
        return -1;
    if (e->neg_sec < 0) {
        if (incr_item(e->errors_counter, e->enoent_key) < 0)
            return -1;
        reply_header(c, unique, 0);
        put_u32(c->hdr + 4, (uint32_t)-ENOENT_);
    } else {
        unsigned char *o = c->hdr + OUT_HEADER;
        memset(o, 0, ENTRY_OUT);
        put_u64(o + 16, (uint64_t)e->neg_sec);
        put_u32(o + 32, (uint32_t)e->neg_nsec);
        reply_header(c, unique, ENTRY_OUT);
        c->iov[0].iov_len = OUT_HEADER + ENTRY_OUT;
    }
    e->n_lookup_miss++;
    return 1;
}

/* fuse_entry_out's first 40 bytes at o: nodeid, the mount's generation, the entry
 * and attr timeouts (codec.entry_out); the attr follows at o + 40 */
static void entry_head(Engine *e, unsigned char *o, uint64_t nodeid)
{
    put_u64(o, nodeid);
    put_u64(o + 8, e->generation);
    put_u64(o + 16, (uint64_t)e->entry_sec);
    put_u64(o + 24, (uint64_t)e->attr_sec);
    put_u32(o + 32, (uint32_t)e->entry_nsec);
    put_u32(o + 36, (uint32_t)e->attr_nsec);
}

/* LOOKUP of an existing name in a directory (NamespaceOps.lookup: nlookup += 1 and
 * the entry); "." and "..", misses (ENOENT or a negative entry), long or
 * malformed names: declined */
static int do_lookup(ctx_t *c, const unsigned char *m, Py_ssize_t n, uint64_t unique,
                     uint64_t nodeid)
{
    Engine *e = c->e;
    const unsigned char *name = m + IN_HEADER;
    Py_ssize_t room = n - IN_HEADER;
    const unsigned char *nul = room > 0 ? memchr(name, 0, (size_t)room) : NULL;
    if (!nul)
        DECLINE();
    Py_ssize_t len = nul - name;
    if (len < 1 || len > 255) /* codec.plain_name, and ENAMETOOLONG past NAME_MAX */
        DECLINE();
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        DECLINE();
    PyObject *inodes = ga(c, e->fs, s_inodes);
    if (!inodes || !PyDict_Check(inodes))
        DECLINE();
    PyObject *parent = inode_of(c, inodes, nodeid);
    if (!parent || (PyObject *)Py_TYPE(parent) != e->t_inode)
        DECLINE();
    PyObject *dir = ga(c, parent, s_dir);
    if (!dir || (PyObject *)Py_TYPE(dir) != e->t_dir)
        DECLINE();
    PyObject *names = ga(c, dir, s_names_);
    if (!names || !PyDict_Check(names))
        DECLINE();
    PyObject *key = keep(c, PyBytes_FromStringAndSize((const char *)name, len));
    if (!key)
        DECLINE();
    PyObject *ent = PyDict_GetItemWithError(names, key); /* (cookie, ino) */
    if (!ent && !PyErr_Occurred())
        return lookup_miss(c, unique);
    if (!ent || !PyTuple_Check(ent) || PyTuple_GET_SIZE(ent) != 2)
        DECLINE();
    PyObject *ino_o = PyTuple_GET_ITEM(ent, 1);
    PyObject *child = PyDict_GetItemWithError(inodes, ino_o);
    if (!child)
        DECLINE();
    child = keep(c, Py_NewRef(child));
    long long nlookup;
    unsigned char *o = c->hdr + OUT_HEADER;
    if (!child || attr_of(c, child, o + 40) < 0 || ga_ll(child, s_nlookup, &nlookup) < 0)
        DECLINE();
    /* ---- phase 2 ---- */
    if (count_op(c, s_lookup_op) < 0 || sa_ll(child, s_nlookup, nlookup + 1) < 0)
        return -1;
    entry_head(e, o, get_u64(o + 40)); /* nodeid = the attr's ino */
    reply_header(c, unique, ENTRY_OUT);
    c->iov[0].iov_len = OUT_HEADER + ENTRY_OUT;
    e->n_lookup++;
    return 1;
decline:
    PyErr_Clear();
    return 0;
}

/* ----------------------------------------------------------------- OPEN */

/* The FOPEN flags of an OPEN or CREATE reply (Operations._open_flags): FOPEN_NOFLUSH,
 * and FOPEN_KEEP_CACHE unless keep_cache is off or ShmFs.open_drops_cache says the
 * next read must move atime (the same clock calls: one for _atime_stale's "now + 1",
 * one more when it is stale). 0, or -1 with an exception. */
static int open_keeps_cache(ctx_t *c, long long atime, long long mtime, long long ctime,
                            uint32_t *out)
{
    uint32_t oflags = FOPEN_NOFLUSH;
    Engine *e = c->e;
    if (e->keep_cache) { /* not ShmFs.open_drops_cache(ino) */
        int noatime, relatime;
        if (atime_mode(c, &noatime, &relatime) < 0)
            return -1;
        PyObject *now = now_ns(c);
        long long t = now ? PyLong_AsLongLong(now) : -1;
        if (!now || (t == -1 && PyErr_Occurred()))
            return -1;
        if (t == LLONG_MAX) {
            PyErr_SetString(PyExc_OverflowError, "hotpath: clock at its end");
            return -1;
        }
        long long t1 = t + 1; /* fsimpl.atime.atime_needs_update(mode, False, ..., now + 1) */
        int stale = !noatime;
        if (stale && relatime)
            stale = mtime >= atime || ctime >= atime ||
                    floordiv(t1, 1000000000LL) - floordiv(atime, 1000000000LL) >= e->relatime_s;
        stale = stale && atime != t1;
        int drops = 0;
        if (stale) {
            PyObject *now2 = now_ns(c);
            long long t2 = now2 ? PyLong_AsLongLong(now2) : -1;
            if (!now2 || (t2 == -1 && PyErr_Occurred()))
                return -1;
            drops = !relatime ||
                    floordiv(t2, 1000000000LL) - floordiv(atime, 1000000000LL) >= e->relatime_s;
        }
        if (!drops)
            oflags |= FOPEN_KEEP_CACHE;
    }
    *out = oflags;
    return 0;
}

/* OPEN of a regular file (Operations._open -> FileOps.open -> _new_handle, then
 * _open_flags): a new Handle(ino, flags, False) under fs._next_fh, inode.nopen += 1,
 * the reply fuse_open_out with FOPEN_NOFLUSH, and FOPEN_KEEP_CACHE unless keep_cache
 * is off or ShmFs.open_drops_cache says the next read must move atime (the same
 * clock calls: one for _atime_stale's "now + 1", one more when it is stale).
 * Declined, to Python's own checks: O_TRUNC (the truncate, set-id clearing with
 * FUSE_OPEN_KILL_SUIDGID), O_APPEND (-o writeback_cache strips it: _handle_flags),
 * any open_flags, any chattr flag (fsflags.check_open), a reclaimed inode (the
 * recharge), window files and windows' objects, anything not a plain regular file,
 * a message of another length. The access mode was checked by the kernel, which
 * FileOps.open does not repeat either. */
static int do_open(ctx_t *c, const unsigned char *m, Py_ssize_t n, uint64_t unique,
                   uint64_t nodeid)
{
    Engine *e = c->e;
    if (n != IN_HEADER + OPEN_IN)
        DECLINE();
    uint32_t flags = get_u32(m + IN_HEADER), open_flags = get_u32(m + IN_HEADER + 4);
    if (open_flags || (flags & (O_TRUNC_ | O_APPEND_)))
        DECLINE();
    PyObject *inodes = ga(c, e->fs, s_inodes);
    PyObject *handles = inodes ? ga(c, e->fs, s_handles) : NULL;
    if (!handles || !PyDict_Check(inodes) || !PyDict_Check(handles))
        DECLINE();
    PyObject *inode = inode_of(c, inodes, nodeid);
    if (!inode || (PyObject *)Py_TYPE(inode) != e->t_inode || nodeid == ROOT_INO)
        DECLINE();
    long long mode, fsflags, nopen, next_fh, atime = 0, mtime = 0, ctime = 0;
    if (ga_ll(inode, s_mode, &mode) < 0 || (mode & S_IFMT_) != S_IFREG_ ||
        ga_ll(inode, s_fsflags, &fsflags) < 0 || fsflags != 0 ||
        ga_ll(inode, s_nopen, &nopen) < 0 || nopen < 0 || nopen == LLONG_MAX)
        DECLINE();
    PyObject *rec = ga(c, inode, s_reclaimed);
    if (!rec || rec != Py_False)
        DECLINE();
    if (e->keep_cache && (ga_ll(inode, s_atime_ns, &atime) < 0 ||
                          ga_ll(inode, s_mtime_ns, &mtime) < 0 ||
                          ga_ll(inode, s_ctime_ns, &ctime) < 0))
        DECLINE();
    if (window_file(c, nodeid) != 0)
        DECLINE();
    if (ga_ll(e->fs, s_next_fh, &next_fh) < 0 || next_fh < 0 || next_fh == LLONG_MAX)
        DECLINE();
    PyObject *fh_key = keep(c, PyLong_FromLongLong(next_fh));
    PyObject *ino_o = fh_key ? keep(c, PyLong_FromUnsignedLongLong(nodeid)) : NULL;
    PyObject *fl_o = ino_o ? keep(c, PyLong_FromUnsignedLong(flags)) : NULL;
    if (!fl_o)
        DECLINE();
    int has = PyDict_Contains(handles, fh_key);
    if (has != 0) /* _next_fh is never reused; a clash is not ours to resolve */
        DECLINE();
    /* the Handle, made before any change (its __init__ has no side effect) */
    PyObject *hargs[3] = {ino_o, fl_o, Py_False};
    PyObject *h = keep(c, PyObject_Vectorcall(e->t_handle, hargs, 3, NULL));
    if (!h || (PyObject *)Py_TYPE(h) != e->t_handle)
        DECLINE();
    /* ---- phase 2 ---- */
    if (count_op(c, s_open_op) < 0 || sa_ll(e->fs, s_next_fh, next_fh + 1) < 0 ||
        PyDict_SetItem(handles, fh_key, h) < 0 || sa_ll(inode, s_nopen, nopen + 1) < 0)
        return -1;
    uint32_t oflags;
    if (open_keeps_cache(c, atime, mtime, ctime, &oflags) < 0)
        return -1;
    unsigned char *o = c->hdr + OUT_HEADER;
    put_u64(o, (uint64_t)next_fh);
    put_u32(o + 8, oflags);
    put_u32(o + 12, 0);
    reply_header(c, unique, OPEN_OUT);
    c->iov[0].iov_len = OUT_HEADER + OPEN_OUT;
    e->n_open++;
    return 1;
decline:
    PyErr_Clear();
    return 0;
}

/* ----------------------------------------------------------------- RELEASE */

/* RELEASE of a regular file's handle (FileOps.release -> FsCore._drop_handle):
 * the handle popped, inode.nopen -= 1. Declined: a message of another length (the
 * generic parser's answer), an unknown fh (Python answers 0 and changes nothing
 * but the op count), a directory handle, a handle whose inode is gone or is not
 * a plain regular file, a window file or a window's object, a handle holding
 * window grant tokens (GrantTable.handle_released), the last open of an unlinked
 * inode (the reclaim and eviction of _maybe_evict), an nopen that is not positive. */
static int do_release(ctx_t *c, const unsigned char *m, Py_ssize_t n, uint64_t unique,
                      uint64_t nodeid)
{
    Engine *e = c->e;
    (void)nodeid; /* _drop_handle goes by the fh alone, as here */
    if (n != IN_HEADER + RELEASE_IN)
        DECLINE();
    uint64_t fh = get_u64(m + IN_HEADER);
    if (fh > (uint64_t)LLONG_MAX)
        DECLINE();
    PyObject *handles = ga(c, e->fs, s_handles);
    PyObject *inodes = handles ? ga(c, e->fs, s_inodes) : NULL;
    if (!inodes || !PyDict_Check(handles) || !PyDict_Check(inodes))
        DECLINE();
    PyObject *key = keep(c, PyLong_FromUnsignedLongLong(fh));
    if (!key)
        DECLINE();
    PyObject *h = PyDict_GetItemWithError(handles, key);
    if (!h || (PyObject *)Py_TYPE(h) != e->t_handle)
        DECLINE();
    h = keep(c, Py_NewRef(h));
    PyObject *isdir = ga(c, h, s_is_dir);
    long long hino, mode, nlink, nopen;
    if (!isdir || isdir != Py_False || ga_ll(h, s_ino, &hino) < 0 || hino < 0)
        DECLINE();
    PyObject *inode = inode_of(c, inodes, (uint64_t)hino);
    if (!inode || (PyObject *)Py_TYPE(inode) != e->t_inode || hino == ROOT_INO)
        DECLINE();
    if (ga_ll(inode, s_mode, &mode) < 0 || (mode & S_IFMT_) != S_IFREG_ ||
        ga_ll(inode, s_nlink, &nlink) < 0 || ga_ll(inode, s_nopen, &nopen) < 0)
        DECLINE();
    if (nopen < 1 || (nlink == 0 && nopen == 1)) /* nopen must stay sane; reclaim: Python */
        DECLINE();
    PyObject *w = ga(c, e->fs, s_windows);
    if (!w)
        DECLINE();
    if (w != Py_None) {
        int wf = window_file(c, (uint64_t)hino);
        if (wf != 0)
            DECLINE();
        PyObject *g = ga(c, w, s_grants);
        PyObject *byfh = g ? ga(c, g, s_by_fh) : NULL;
        if (!byfh || !PyDict_CheckExact(byfh))
            DECLINE();
        int has = PyDict_Contains(byfh, key);
        if (has != 0)
            DECLINE();
    }
    /* ---- phase 2 ---- */
    if (count_op(c, s_release_op) < 0 || PyDict_DelItem(handles, key) < 0 ||
        sa_ll(inode, s_nopen, nopen - 1) < 0)
        return -1;
    reply_header(c, unique, 0);
    e->n_release++;
    return 1;
decline:
    PyErr_Clear();
    return 0;
}

#include "hotmeta.c" /* CREATE, UNLINK, MKDIR, RMDIR, FORGET, BATCH_FORGET */

/* ----------------------------------------------------------------- methods */

/* 0 declined; OP answered (reply in c); -1 failed after a change */
static int serve_raw(Engine *e, const unsigned char *m, Py_ssize_t n, int ordered, ctx_t *c);

static int serve(Engine *e, PyObject *msg, int ordered, ctx_t *c, Py_buffer *mb)
{
    if (PyObject_GetBuffer(msg, mb, PyBUF_SIMPLE) < 0)
        return -1;
    return serve_raw(e, mb->buf, mb->len, ordered, c);
}

/* serve() on the request's bytes (the C loop's own buffer, native/hotloop.c) */
static int serve_raw(Engine *e, const unsigned char *m, Py_ssize_t n, int ordered, ctx_t *c)
{
    if (n < IN_HEADER || get_u32(m) != (uint32_t)n || get_u32(m + 36) != 0) /* extlen */
        goto declined;
    uint32_t op = get_u32(m + 4);
    uint64_t unique = get_u64(m + 8), nodeid = get_u64(m + 16);
    int r;
    if (op == OP_READ)
        r = do_read(c, m, n, unique, nodeid);
    else if (op == OP_WRITE)
        r = do_write(c, m, n, unique, nodeid);
    else if (op == OP_GETATTR && ordered)
        r = do_getattr(c, m, n, unique, nodeid);
    else if (op == OP_LOOKUP && ordered)
        r = do_lookup(c, m, n, unique, nodeid);
    else if (op == OP_RELEASE && ordered)
        r = do_release(c, m, n, unique, nodeid);
    else if (op == OP_OPEN && ordered)
        r = do_open(c, m, n, unique, nodeid);
    else if (op == OP_CREATE && ordered)
        r = do_create(c, m, n, unique, nodeid);
    else if (op == OP_UNLINK && ordered)
        r = do_unlink(c, m, n, unique, nodeid);
    else if (op == OP_MKDIR && ordered)
        r = do_mkdir(c, m, n, unique, nodeid);
    else if (op == OP_RMDIR && ordered)
        r = do_rmdir(c, m, n, unique, nodeid);
    else if (op == OP_FORGET || op == OP_BATCH_FORGET) /* no reply: never waits */
        r = do_forget(c, m, n, op, nodeid);
    else
        goto declined;
    if (r > 0)
        return (int)op;
    if (r < 0) {
        e->errors++;
        return -1;
    }
declined:
    e->declined++;
    return 0;
}

static int writev_all(int fd, struct iovec *iov, int niov, size_t total, Engine *e)
{
    ssize_t w;
    if (total >= NOGIL_BYTES) {
        e->nogil++;
        Py_BEGIN_ALLOW_THREADS
        do {
            w = writev(fd, iov, niov);
        } while (w < 0 && errno == EINTR);
        Py_END_ALLOW_THREADS
    } else {
        do {
            w = writev(fd, iov, niov);
        } while (w < 0 && errno == EINTR);
    }
    return w < 0 ? errno : 0;
}

/* requests[op] = [count, ns]: count it, with the time from t0 to t1 (perf_counter_ns's
 * clock; the C loop passes the t1 it keeps as its `last`: one clock read fewer) */
static int count_request_at(PyObject *requests, int op, long long t0, long long t1)
{
    return count_request_n(requests, op, 1, t1 - t0);
}

/* requests[op] = [count + n, ns_total + ns] (n requests served in ns together) */
static int count_request_n(PyObject *requests, int op, long long n, long long ns)
{
    PyObject *key = PyLong_FromLong(op);
    if (!key)
        return -1;
    PyObject *entry = PyDict_GetItemWithError(requests, key);
    int r = -1;
    if (!entry && !PyErr_Occurred()) {
        entry = Py_BuildValue("[ii]", 0, 0);
        if (entry) {
            r = PyDict_SetItem(requests, key, entry);
            Py_DECREF(entry); /* the dict holds it */
            if (r < 0)
                entry = NULL;
        }
    }
    if (entry && PyList_Check(entry) && PyList_GET_SIZE(entry) == 2) {
        long long n0 = PyLong_AsLongLong(PyList_GET_ITEM(entry, 0));
        long long n1 = PyLong_AsLongLong(PyList_GET_ITEM(entry, 1));
        if (!PyErr_Occurred()) {
            PyObject *a = PyLong_FromLongLong(n0 + n), *b = PyLong_FromLongLong(n1 + ns);
            if (a && b) {
                PyList_SetItem(entry, 0, a); /* steals */
                PyList_SetItem(entry, 1, b);
                r = 0;
            } else {
                Py_XDECREF(a);
                Py_XDECREF(b);
            }
        }
    } else if (entry && !PyErr_Occurred()) {
        PyErr_SetString(PyExc_TypeError, "hotpath: a request counter is not [count, ns]");
    }
    Py_DECREF(key);
    return r;
}

/* requests[op] = [count, ns]: count it, with the time since t0 (perf_counter_ns) */
static int count_request(PyObject *requests, int op, long long t0)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* what time.perf_counter_ns reads */
    return count_request_at(requests, op, t0, (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
}

static ctx_t *ctx_take(Engine *e)
{
    ctx_t *c;
    if (!e->ctx_busy && e->ctx) {
        e->ctx_busy = 1;
        c = e->ctx;
    } else {
        c = PyMem_Malloc(sizeof *c);
        if (!c)
            return NULL;
    }
    c->e = e;
    c->nown = c->nbufs = 0;
    return c;
}

static void ctx_give(Engine *e, ctx_t *c)
{
    ctx_release(c);
    if (c == e->ctx)
        e->ctx_busy = 0;
    else
        PyMem_Free(c);
}

#include "winfast_api.h"
#include "hotloop.c" /* Engine.serve: the first reader's loop */
#include "hotclone.c" /* Engine.serve_clone: a clone reader's loop */

/*
 * Engine.handle(msg, fd, ordered, t0, requests) -> None (declined: nothing
 * changed, answer it in Python) or the errno of the reply's writev to fd (0:
 * written).  ordered: false while notifications are queued that a GETATTR reply
 * would have to wait for (only READ and WRITE are taken then).  t0, requests:
 * the session's service-time counters (Session.stats.requests), updated here.
 */
static PyObject *Engine_handle(Engine *e, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyDict_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "handle(msg, fd, ordered, t0, requests)");
        return NULL;
    }
    long fdl = PyLong_AsLong(args[1]);
    int ordered = PyObject_IsTrue(args[2]);
    long long t0 = PyLong_AsLongLong(args[3]);
    if (PyErr_Occurred() || ordered < 0)
        return NULL;
    if (fdl < 0 || fdl > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "hotpath: bad fd");
        return NULL;
    }
    int fd = (int)fdl;
    ctx_t *c = ctx_take(e);
    if (!c)
        return PyErr_NoMemory();
    Py_buffer mb;
    mb.obj = NULL;
    PyObject *res = NULL;
    int op = serve(e, args[0], ordered, c, &mb);
    if (op > 0) {
        int err = c->total ? writev_all(fd, c->iov, c->niov, c->total, e) : 0; /* FORGET: none */
        if (err && err != ENOENT && err != ENODEV)
            e->write_errors++;
        /* the reply is out: a failure to count it must not make the caller answer
         * the request a second time */
        if (count_request(args[4], op, t0) < 0) {
            PyErr_Clear();
            e->errors++;
        }
        res = PyLong_FromLong(err);
    } else if (op == 0) {
        res = Py_NewRef(Py_None);
    }
    ctx_give(e, c);
    if (mb.obj)
        PyBuffer_Release(&mb);
    return res;
}

/* Engine.answer(msg, ordered) -> None (declined) or the reply bytes (twin tests; b""
 * for a FORGET taken, which has no reply). */
static PyObject *Engine_answer(Engine *e, PyObject *args)
{
    PyObject *msg;
    int ordered;
    if (!PyArg_ParseTuple(args, "Op", &msg, &ordered))
        return NULL;
    ctx_t *c = ctx_take(e);
    if (!c)
        return PyErr_NoMemory();
    Py_buffer mb;
    mb.obj = NULL;
    PyObject *res = NULL;
    int op = serve(e, msg, ordered, c, &mb);
    if (op > 0) {
        res = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)c->total);
        if (res) {
            char *d = PyBytes_AS_STRING(res);
            for (int i = 0; i < c->niov; i++) {
                memcpy(d, c->iov[i].iov_base, c->iov[i].iov_len);
                d += c->iov[i].iov_len;
            }
        }
    } else if (op == 0) {
        res = Py_NewRef(Py_None);
    }
    ctx_give(e, c);
    if (mb.obj)
        PyBuffer_Release(&mb);
    return res;
}

static PyObject *Engine_statistics(Engine *e, PyObject *unused)
{
    return Py_BuildValue(
        "{s:O,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:l,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K}", "engaged", Py_True,
        "read", e->n_read, "write", e->n_write, "getattr", e->n_getattr, "lookup", e->n_lookup,
        "lookup_miss", e->n_lookup_miss, "release", e->n_release, "open", e->n_open, "create", e->n_create, "unlink", e->n_unlink, "forget", e->n_forget, "mkdir", e->n_mkdir, "rmdir", e->n_rmdir,
        "declined", e->declined, "bytes_read", e->bytes_read, "bytes_written", e->bytes_written,
        "gil_released", e->nogil, "write_errors", e->write_errors, "errors", e->errors,
        "last_decline_line", e->last_decline, "cloop_entries", e->cl_entries,
        "cloop_served", e->cl_served, "cloop_returned", e->cl_returned,
        "cloop_window", e->cl_window, "cloop_enotty", e->cl_enotty,
        "reserve_pops", e->n_respop, "reap", e->n_reap, "cloop_gil_kept", e->cl_kept,
        "write_cached", e->n_wcached, "reap_pages", e->n_reap_pages,
        "create_objects_in_c", e->n_fast_new, "copies_unlocked", e->n_unlocked,
        "write_deferred", e->n_deferred);
}

static int Engine_init(Engine *e, PyObject *args, PyObject *kw)
{
    PyObject *fs, *types, *fstats;
    PyObject *watch, *dirtype;
    long long attr_sec, attr_nsec, relatime_s, dirent_size, max_file_size, entry_sec, entry_nsec;
    unsigned long long generation;
    PyObject *errors = Py_None;
    long long neg_sec = -1, neg_nsec = 0;
    int keep_cache = 1;
    if (!PyArg_ParseTuple(args, "OO!OLLLLLOO!LLK|OLLp", &fs, &PyTuple_Type, &types, &fstats,
                          &attr_sec, &attr_nsec, &relatime_s, &dirent_size, &max_file_size,
                          &watch, &PyType_Type, &dirtype, &entry_sec, &entry_nsec, &generation,
                          &errors, &neg_sec, &neg_nsec, &keep_cache))
        return -1;
    e->keep_cache = keep_cache;
    if (errors != Py_None && !PyDict_Check(errors)) {
        PyErr_SetString(PyExc_TypeError, "errors must be a Counter or None");
        return -1;
    }
    Py_XSETREF(e->errors_counter, errors == Py_None ? NULL : Py_NewRef(errors));
    if (!e->enoent_key && !(e->enoent_key = PyLong_FromLong(ENOENT_)))
        return -1;
    e->neg_sec = neg_sec;
    e->neg_nsec = neg_nsec;
    Py_XSETREF(e->t_dir, Py_NewRef(dirtype));
    e->entry_sec = entry_sec;
    e->entry_nsec = entry_nsec;
    e->generation = generation;
    if (watch != Py_None && !PyType_Check(watch)) {
        PyErr_SetString(PyExc_TypeError, "watch_type must be a type or None");
        return -1;
    }
    Py_XSETREF(e->t_watch, watch == Py_None ? NULL : Py_NewRef(watch));
    PyObject *t[7];
    if (!PyArg_ParseTuple(types, "O!O!O!O!O!O!O!", &PyType_Type, &t[0], &PyType_Type, &t[1],
                          &PyType_Type, &t[2], &PyType_Type, &t[3], &PyType_Type, &t[4],
                          &PyType_Type, &t[5], &PyType_Type, &t[6]))
        return -1;
    Py_XSETREF(e->fs, Py_NewRef(fs));
    Py_XSETREF(e->t_inode, Py_NewRef(t[0]));
    Py_XSETREF(e->t_handle, Py_NewRef(t[1]));
    Py_XSETREF(e->t_mapping, Py_NewRef(t[2]));
    Py_XSETREF(e->t_pages, Py_NewRef(t[3]));
    Py_XSETREF(e->t_budget, Py_NewRef(t[4]));
    Py_XSETREF(e->t_arena, Py_NewRef(t[5]));
    Py_XSETREF(e->t_stats, Py_NewRef(t[6]));
    if ((PyObject *)Py_TYPE(fstats) != t[6]) {
        PyErr_SetString(PyExc_TypeError, "fault_stats must be a FaultStats");
        return -1;
    }
    Py_XSETREF(e->fault_stats, Py_NewRef(fstats));
    e->attr_sec = attr_sec;
    e->attr_nsec = attr_nsec;
    e->relatime_s = relatime_s;
    e->dirent_size = dirent_size;
    e->max_file_size = max_file_size;
    if (!e->ctx && !(e->ctx = PyMem_Malloc(sizeof(ctx_t)))) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void Engine_dealloc(Engine *e)
{
    wc_clear(e); /* first: its fold (nothing, after serve) writes through e->fs */
    Py_XDECREF(e->fs);
    Py_XDECREF(e->t_inode);
    Py_XDECREF(e->t_handle);
    Py_XDECREF(e->t_mapping);
    Py_XDECREF(e->t_pages);
    Py_XDECREF(e->t_budget);
    Py_XDECREF(e->t_arena);
    Py_XDECREF(e->t_stats);
    Py_XDECREF(e->fault_stats);
    Py_XDECREF(e->t_watch);
    Py_XDECREF(e->t_dir);
    Py_XDECREF(e->errors_counter);
    Py_XDECREF(e->enoent_key);
    Py_XDECREF(e->copy_hooks);
    PyMem_Free(e->ctx);
    Py_TYPE(e)->tp_free((PyObject *)e);
}

/* Engine.copy_hooks(hooks): (before, after) or None -- see do_write (holcopy) */
static PyObject *Engine_copy_hooks(Engine *e, PyObject *hooks)
{
    if (hooks != Py_None && (!PyTuple_CheckExact(hooks) || PyTuple_GET_SIZE(hooks) != 2 ||
                             !PyCallable_Check(PyTuple_GET_ITEM(hooks, 0)) ||
                             !PyCallable_Check(PyTuple_GET_ITEM(hooks, 1)))) {
        PyErr_SetString(PyExc_TypeError, "copy_hooks((before, after)) or copy_hooks(None)");
        return NULL;
    }
    Py_XSETREF(e->copy_hooks, hooks == Py_None ? NULL : Py_NewRef(hooks));
    Py_RETURN_NONE;
}

static PyMethodDef Engine_methods[] = {
    {"copy_hooks", (PyCFunction)Engine_copy_hooks, METH_O,
     "copy_hooks((before, after) | None): around a large WRITE's copy (fairness.py)"},
    {"handle", (PyCFunction)(void (*)(void))Engine_handle, METH_FASTCALL,
     "handle(msg, fd, ordered, t0, requests) -> None (declined) or the reply's errno"},
    {"answer", (PyCFunction)Engine_answer, METH_VARARGS,
     "answer(msg, ordered) -> None (declined) or the reply bytes"},
    {"statistics", (PyCFunction)Engine_statistics, METH_NOARGS, "counters"},
    {"reap", (PyCFunction)Engine_reap, METH_NOARGS,
     "reap() -> 1: fs.evict_later's head evicted as FsCore.reap(1) would, 0: declined"},
    {"serve", (PyCFunction)(void (*)(void))Engine_serve, METH_FASTCALL,
     "serve(fd, buf, last, spin_ns, pending, requests): the reader's loop (hotloop.c)"},
    {"spin", (PyCFunction)(void (*)(void))Engine_spin, METH_FASTCALL,
     "spin(fd, spin_ns) -> readable: a clone reader's spin, GIL released (hotloop.c)"},
    {"serve_clone", (PyCFunction)(void (*)(void))Engine_serve_clone, METH_FASTCALL,
     "serve_clone(fd, buf, session, ...): a clone reader's loop (hotclone.c)"},
    {"clone_statistics", (PyCFunction)Engine_clone_statistics, METH_NOARGS,
     "the clone loop's counters (hotclone.c)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mount.server._hotpath.Engine",
    .tp_basicsize = sizeof(Engine),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "READ / WRITE / GETATTR of regular files in C (native/hotpath.c).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Engine_init,
    .tp_dealloc = (destructor)Engine_dealloc,
    .tp_methods = Engine_methods,
};

static struct PyModuleDef moddef = {
    PyModuleDef_HEAD_INIT, "_hotpath", "Regular-file READ/WRITE/GETATTR in C.", -1, NULL,
};

#define INTERN(var, text) \
    do { if (!((var) = PyUnicode_InternFromString(text))) return NULL; } while (0)

PyMODINIT_FUNC PyInit__hotpath(void)
{
    const char *cres = getenv("SHMFS_CRESERVE");
    c_reserve = !(cres && strcmp(cres, "0") == 0);
    const char *chold = getenv("SHMFS_CLOOP_HOLD"); /* 0: the GIL around every read (A/B) */
    if (chold && strcmp(chold, "0") == 0)
        cloop_hold_ns = 0;
    const char *cdefer = getenv("SHMFS_WC_DEFER"); /* 0: appends3's deferral off (A/B) */
    wd_on = !(cdefer && strcmp(cdefer, "0") == 0);
    const char *cspin = getenv("SHMFS_WC_SPIN"); /* µs; 0: appends3's spin off (A/B) */
    if (cspin && *cspin)
        wc_spin_ns = atoll(cspin) * 1000LL;
    PyObject *tmod = PyImport_ImportModule("time");
    time_ns_fn = tmod ? PyObject_GetAttrString(tmod, "time_ns") : NULL;
    Py_XDECREF(tmod);
    if (!time_ns_fn)
        return NULL;
    INTERN(s_inodes, "_inodes");
    INTERN(s_handles, "_handles");
    INTERN(s_windows, "_windows");
    INTERN(s_ino, "ino");
    INTERN(s_flags, "flags");
    INTERN(s_mode, "mode");
    INTERN(s_mapping, "mapping");
    INTERN(s_fsflags, "fsflags");
    INTERN(s_size, "size");
    INTERN(s_pages, "pages");
    INTERN(s_frames_, "_frames");
    INTERN(s_flags_, "_flags");
    INTERN(s_count_, "_count");
    INTERN(s_nrpages, "nrpages");
    INTERN(s_gen, "gen");
    INTERN(s_arena, "arena");
    INTERN(s_budget, "budget");
    INTERN(s_max_pages, "max_pages");
    INTERN(s_used_pages, "used_pages");
    INTERN(s_nshared, "nshared");
    INTERN(s_replaying, "replaying");
    INTERN(s_fps, "fps");
    INTERN(s_mvs, "_mvs");
    INTERN(s_alloc1, "alloc1");
    INTERN(s_res_, "_res");
    INTERN(s_frames_allocated, "frames_allocated");
    INTERN(s_alloc, "alloc");
    INTERN(s_insert1, "insert1");
    INTERN(s_insert_range, "insert_range");
    INTERN(s_set_flags, "set_flags");
    INTERN(s_lookup, "lookup");
    INTERN(s_fstats, "fstats");
    INTERN(s__fstats, "_fstats");
    INTERN(s_faults, "faults");
    INTERN(s_read, "read");
    INTERN(s_write, "write");
    INTERN(s_minor, "minor");
    INTERN(s_major, "major");
    INTERN(s_pages_allocated, "pages_allocated");
    INTERN(s_zero_pages, "zero_pages");
    INTERN(s_atime_ns, "atime_ns");
    INTERN(s_mtime_ns, "mtime_ns");
    INTERN(s_ctime_ns, "ctime_ns");
    INTERN(s_clock, "_clock");
    INTERN(s_atime_mode, "atime_mode");
    INTERN(s_noatime, "noatime");
    INTERN(s_nodiratime, "nodiratime");
    INTERN(s_relatime, "relatime");
    INTERN(s_ops, "_ops");
    INTERN(s_nlink, "nlink");
    INTERN(s_uid, "uid");
    INTERN(s_gid, "gid");
    INTERN(s_rdev, "rdev");
    INTERN(s_window_blocks, "window_blocks");
    INTERN(s_dir, "dir");
    INTERN(s_getattr, "getattr");
    INTERN(s_symlink_pages, "symlink_pages");
    INTERN(s_wins, "wins");
    INTERN(s_objs, "objs");
    INTERN(s_fd_, "_fd");
    INTERN(s_target, "target");
    INTERN(s_names_, "_names");
    INTERN(s_nlookup, "nlookup");
    INTERN(s_lookup_op, "lookup");
    INTERN(s_nopen, "nopen");
    INTERN(s_refresh, "refresh");
    INTERN(s_release_op, "release");
    INTERN(s_grants, "grants");
    INTERN(s_by_fh, "_by_fh");
    INTERN(s_is_dir, "is_dir");
    INTERN(s_next_fh, "_next_fh");
    INTERN(s_reclaimed, "reclaimed");
    INTERN(s_open_op, "open");
    if (hotmeta_intern() < 0)
        return NULL;
    if (PyType_Ready(&EngineType) < 0)
        return NULL;
    PyObject *mod = PyModule_Create(&moddef);
    if (!mod)
        return NULL;
    if (PyModule_AddObjectRef(mod, "Engine", (PyObject *)&EngineType) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
