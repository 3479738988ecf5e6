/*
 * mount.server._winfast: the common case of a window REMAP ioctl, in C.
 *
 * Why (docs/performance.md, "Windows (issue 12)"): one remap-then-touch step
 * cost ~200 us of which ~150 were Python in the daemon and thread hand-offs;
 * half the kernel emulation's rate leaves ~18 us a step for everything.
 *
 * What: Engine.remap(msg) takes one FUSE request.  If it is a REMAP of one
 * page of a window in the common state (the checks below), it applies exactly
 * what the Python path (mount/server/ioctl.py -> fsimpl WindowTable.remap ->
 * vmcore remap_file_pages + make_pages_present, fsimpl _changed / _push)
 * would do to the *same Python objects* -- the page-table chunk arrays, the
 * object's page cache arrays, the WinState sets and dicts, every counter --
 * and queues the notifications and the reply to a C writer thread.  Anything
 * else returns None before changing anything, and the session answers the
 * request in Python.  There is no second copy of any state: the Python
 * objects stay the single source of truth.
 *
 * The writer thread: a notification may wait for the daemon (an invalidated
 * dirty page is laundered with a WRITE the reader thread must answer; a
 * NOTIFY_STORE waits for the page lock of a READ still queued), so the reader
 * never writes them itself (mount/server/session.py says why).  This thread
 * writes the batches in order, without the GIL.  A queued NOTIFY_STORE can be
 * cancelled (Engine.cancel) by a READ or write(2) of its page answered first,
 * as the Python notifier's stores are.
 *
 * Memory safety: every index into a chunk or an arena segment is checked
 * against the buffer's length; any unexpected type declines.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>


#include "winfast.h"
#include "winfast_api.h"



/* How long the writer spins for the seal of a REMAP batch queued early before it
 * sleeps on cv: the reader's phase 2 of a one-page remap takes a few µs. */
#define SEAL_SPIN_NS 5000ULL
/* After the writer had to sleep for a seal, this many REMAPs are queued whole (as
 * with the switch off): waking the writer early only pays while it gets a CPU of its
 * own; on a busy two-CPU machine it preempts the reader it then waits for. */
#define EARLY_BACKOFF 256

/* The writer (e->mu held) reached message k of batch b, which the reader queued early
 * and has not sealed up to k: spin without the mutex, then sleep, until it does.
 * 1: message k is ready; 0: the batch was sealed with fewer messages. */
static int wait_sealed(Engine *e, batch_t *b, int k)
{
    e->early_spins++;
    pthread_mutex_unlock(&e->mu);
    uint64_t t0 = now_ns();
    uint64_t spin = e->early_enabled == 2 ? 0 : SEAL_SPIN_NS; /* 2: tests' sleep path */
    while (k >= __atomic_load_n(&b->nready, __ATOMIC_ACQUIRE) &&
           k < __atomic_load_n(&b->nmsg, __ATOMIC_ACQUIRE) && now_ns() - t0 < spin)
        __builtin_ia32_pause();
    pthread_mutex_lock(&e->mu);
    if (k >= b->nready && k < b->nmsg) {
        e->early_sleeps++;
        /* the reader did not seal within the spin: it lost its CPU (most likely to
         * this writer, on a busy machine) -- queue the next REMAPs whole */
        if (e->early_enabled == 1) {
            e->early_backoff = EARLY_BACKOFF;
            e->early_backoffs++;
        }
    }
    while (k >= b->nready && k < b->nmsg) { /* remap_seal signals cv if we sleep */
        e->sleeping = 1;
        pthread_cond_wait(&e->cv, &e->mu);
        e->sleeping = 0;
    }
    return k < b->nready;
}

static void *writer_main(void *arg)
{
    Engine *e = (Engine *)arg;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (!e->head && !e->stop) {
            e->sleeping = 1;
            pthread_cond_wait(&e->cv, &e->mu);
            e->sleeping = 0;
        }
        batch_t *b = e->head;
        if (!b)
            break; /* stop, and nothing left */
        uint64_t t0 = now_ns();
        e->t_handoff += t0 - b->t_queued;
        e->n_handoff++;
        for (int k = 0; k < b->nmsg; k++) {
            if (k >= b->nready && !wait_sealed(e, b, k))
                break; /* sealed shorter (the remap failed after its INVALs) */
            if (b->state[k] == ST_CANCELLED) {
                e->stores_skipped++;
                continue;
            }
            if (b->state[k] == ST_QUEUED) /* no longer queued from here on: a write-back
                                           * after this is of the stored copy (the
                                           * launder of the replaced one came before) */
                b->state[k] = ST_WRITTEN;
            /* a notification's unique is 0; the reply goes to the fd its request was
             * read from (a clone reader's: each device fd answers its own requests) */
            int fd = get_u64(b->buf + b->off[k] + 8) ? b->reply_fd : e->fd;
            if (fd != e->fd)
                e->clone_replies++;
            pthread_mutex_unlock(&e->mu);
            ssize_t r;
            uint64_t tw = now_ns();
            do {
                r = write(fd, b->buf + b->off[k], b->len[k]);
            } while (r < 0 && errno == EINTR);
            int err = r < 0 ? errno : 0;
            tw = now_ns() - tw;
            pthread_mutex_lock(&e->mu);
            if (fd != e->fd || get_u64(b->buf + b->off[k] + 8)) {
                e->t_reply += tw;
                e->n_reply++;
            } else if (get_u32(b->buf + b->off[k] + 4) == NOTIFY_STORE) {
                e->t_store += tw;
                e->n_store++;
            } else {
                e->t_inval += tw;
                e->n_inval++;
            }
            /* ENOENT: inode unknown to the kernel, or the request is gone */
            if (err && err != ENOENT && err != ENODEV) {
                e->write_errors++;
                e->last_write_errno = (unsigned long long)err;
            }
        }
        e->head = b->next;
        if (!e->head)
            e->tail = NULL;
        e->queued--;
        e->seq_written++;
        free(b);
        if (!e->head || e->seq_waiters)
            pthread_cond_broadcast(&e->idle);
    }
    pthread_cond_broadcast(&e->idle);
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* ------------------------------------------------------ Python object access */

static PyObject *s__fstats; /* winlean: Mapping._fstats, the fstats property's slot */
static PyObject *s_budget, *s_free_pages, *s_alloc1, *s_major, *s_pages_allocated, *s_obj;
static PyObject *s_wins, *s_handles, *s_ino, *s_flags, *s_window, *s_mm, *s_vmas, *s_start,
    *s_end, *s_prot, *s_pgoff, *s_mapping, *s_pt, *s_chunks, *s_bits, *s_frame, *s_cached,
    *s_pending, *s_pushed, *s_epoch, *s_stats, *s_size, *s_pages, *s_frames, *s_pflags, *s_gen,
    *s_arena, *s_nshared, *s_fps, *s_addrs, *s_fstats, *s_listeners, *s_pte_bits, *s_ext,
    *s_write_notify, *s_page_mkwrite, *s_private_data, *s_zaps, *s_ptes_zapped, *s_remaps,
    *s_remap_pages, *s_minor, *s_faults, *s_read, *s_write, *s_prefault, *s_via_vma, *s_npages,
    *s_address, *s_k_remaps, *s_k_pushed, *s_k_inval_events, *s_k_inval_pages;

/* ------------------------------------------------- winlean (issue 12, change 43)
 *
 * The engine's per-REMAP cost was CPython object overhead, not page-table work. Two
 * caches (and two small changes, 3.) cut it, with exactly the semantics of the code they replace;
 * SHMFS_WINLEAN=0 (read at each Engine(); process-wide) turns all of it off for A/B.
 *
 * 1. Slot offsets. ``o.name`` where type(o) defines ``name`` as a __slots__ member
 *    (a member descriptor, T_OBJECT_EX, writable) and keeps the generic getattr and
 *    setattr is the object pointer at a fixed offset in o: a member descriptor is a
 *    data descriptor, so neither an instance dict nor anything else can shadow it.
 *    The (type, name) -> offset lookups are cached; an entry holds a reference to
 *    the type (its address cannot be reused) and its tp_version_tag (assigning to
 *    the class, e.g. replacing the descriptor, changes the tag: looked up again). An
 *    empty slot, or any other kind of attribute (a property, an instance dict
 *    entry), takes the generic path.
 *
 * 2. Exported buffers of numpy arrays (the page-table chunks' four arrays, the page
 *    cache's frames/pflags chunks). The cache is keyed on the array object itself and
 *    holds a reference to it and its buffer export; the owner's attribute or dict
 *    entry is still read on every call, so an array replaced (a chunk allocated,
 *    freed, copied; a window destroyed and another made at the same address) is a
 *    different object: a miss. The held reference means the address of a cached
 *    array cannot be reused by a new one, and the held export pins its data (numpy
 *    refuses to resize an exported array): no generation is needed. The cache is
 *    bounded (ACACHE entries, four-way, evicting in turn: at most that many arrays,
 *    ~2 MiB, outlive their owner until evicted or an Engine is closed); a caller's
 *    views also hold their own reference to the arrays, so an eviction while they
 *    are in use (any Python code run in between may switch threads) leaves them
 *    valid.
 *
 * 3. Mapping.fstats from its _fstats slot once made (lean_fstats), and the REMAP's
 *    chunk-left-empty check stopping at the first entry outside the range.
 */
int winlean_on = 1;

#define SCACHE_BITS 10
#define SCACHE (1 << SCACHE_BITS)
#define ACACHE_BITS 9
#define ACACHE (1 << ACACHE_BITS)

/* a multiplicative hash of one or two pointers onto 2^bits entries */
static inline unsigned lean_hash(const void *p, const void *q, int bits)
{
    uint64_t h = (uint64_t)(uintptr_t)p ^ ((uint64_t)(uintptr_t)q * 0x9E3779B97F4A7C15ULL);
    h ^= h >> 29;
    return (unsigned)((h * 0xBF58476D1CE4E5B9ULL) >> (64 - bits));
}
typedef struct {
    PyTypeObject *tp; /* owned */
    PyObject *name;   /* interned, immortal in practice: the module's s_* names */
    unsigned int tag;
    Py_ssize_t off; /* -1: not a plain slot */
} slot_ent;
static slot_ent scache[SCACHE];
static unsigned long long lean_slot_misses;
static unsigned scache_turn;

static Py_ssize_t slot_offset(PyObject *o, PyObject *name)
{
    PyTypeObject *tp = Py_TYPE(o);
    /* four-way: a set of four entries; a miss replaces them in turn */
    unsigned set = lean_hash(tp, name, SCACHE_BITS) & ~3u;
    for (int w = 0; w < 4; w++) {
        slot_ent *s = &scache[set + w];
        if (s->tp == tp && s->name == name && s->tag == tp->tp_version_tag && s->tag != 0)
            return s->off;
    }
    Py_ssize_t off = -1;
    lean_slot_misses++;
    PyObject *d = _PyType_Lookup(tp, name); /* borrowed; sets the version tag */
    if (d && Py_IS_TYPE(d, &PyMemberDescr_Type) && tp->tp_getattro == PyObject_GenericGetAttr &&
        tp->tp_setattro == PyObject_GenericSetAttr) {
        PyMemberDef *md = ((PyMemberDescrObject *)d)->d_member;
        if (md->type == T_OBJECT_EX && !(md->flags & READONLY) &&
            PyType_IsSubtype(tp, PyDescr_TYPE(d)))
            off = md->offset;
    }
    if (!(tp->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG))
        return off; /* not cacheable */
    slot_ent *s = &scache[set + (scache_turn++ & 3)];
    Py_INCREF(tp);
    Py_XSETREF(s->tp, tp);
    s->name = name;
    s->tag = tp->tp_version_tag;
    s->off = off;
    return off;
}

/* o.name's value, borrowed, when it is a filled plain slot; NULL (no error) else */
static inline PyObject *slot_ref(PyObject *o, PyObject *name)
{
    if (!winlean_on)
        return NULL;
    Py_ssize_t off = slot_offset(o, name);
    if (off < 0)
        return NULL;
    return *(PyObject **)((char *)o + off);
}

/* PyObject_GetAttr(o, name), a plain slot read directly (a new reference) */
PyObject *lean_getattr(PyObject *o, PyObject *name)
{
    PyObject *v = slot_ref(o, name);
    if (v) {
        Py_INCREF(v);
        return v;
    }
    return PyObject_GetAttr(o, name);
}

/* mapping.fstats (vmcore Mapping: a property that makes the FaultStats at first use):
 * its _fstats slot when the property has made it, else the property */
PyObject *lean_fstats(PyObject *mapping, PyObject *name)
{
    PyObject *v = slot_ref(mapping, s__fstats);
    if (v && v != Py_None) {
        Py_INCREF(v);
        return v;
    }
    return PyObject_GetAttr(mapping, name);
}

typedef struct {
    PyObject *arr; /* owned */
    Py_buffer view; /* its export (PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) */
} arr_ent;
static arr_ent acache[ACACHE];
static unsigned acache_turn;
static unsigned long long lean_exports, lean_reuses; /* Engine.statistics()["lean"] */

static void acache_drop(arr_ent *a)
{
    if (a->arr) {
        PyBuffer_Release(&a->view);
        Py_CLEAR(a->arr);
    }
}

/* Drop every cached type and buffer (an Engine's close; tests). */
void winlean_clear(void)
{
    for (int i = 0; i < ACACHE; i++)
        acache_drop(&acache[i]);
    for (int i = 0; i < SCACHE; i++) {
        Py_CLEAR(scache[i].tp);
        scache[i].name = NULL;
    }
}

/* get_array_obj's view of arr from the cache: *view a copy of the cached export (not
 * to be released), *hold a new reference to arr the caller drops instead. */
int lean_array_view(PyObject *arr, Py_ssize_t n, Py_ssize_t itemsize, Py_buffer *view,
                      PyObject **hold)
{
    /* four-way: a set of four entries; a miss replaces them in turn */
    unsigned set = lean_hash(arr, NULL, ACACHE_BITS) & ~3u;
    arr_ent *a = NULL;
    for (int w = 0; w < 4; w++)
        if (acache[set + w].arr == arr)
            a = &acache[set + w];
    if (!a) {
        a = &acache[set + (acache_turn++ & 3)];
        Py_buffer v;
        if (PyObject_GetBuffer(arr, &v, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
            PyErr_Clear();
            return -1;
        }
        acache_drop(a);
        Py_INCREF(arr);
        a->arr = arr;
        a->view = v;
        lean_exports++;
    } else {
        lean_reuses++;
    }
    if (a->view.len != n * itemsize || a->view.itemsize != itemsize)
        return -1;
    *view = a->view;
    Py_INCREF(arr);
    *hold = arr;
    return 0;
}

/* getattr -> C long long; 0 ok, -1 declined (error cleared) */
int attr_ll(PyObject *o, PyObject *name, long long *out)
{
    PyObject *sv = slot_ref(o, name);
    if (sv && PyLong_Check(sv)) { /* IntFlag too: AsLongLong reads the int either way */
        long long x = PyLong_AsLongLong(sv);
        if (x == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return -1;
        }
        *out = x;
        return 0;
    }
    PyObject *v = PyObject_GetAttr(o, name);
    if (!v) {
        PyErr_Clear();
        return -1;
    }
    long long x = PyLong_AsLongLong(v);
    Py_DECREF(v);
    if (x == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    *out = x;
    return 0;
}

/* obj.name += delta on an int attribute; -1 with an exception set on failure */
int incr_attr(PyObject *o, PyObject *name, long long delta)
{
    long long v;
    if (winlean_on) {
        Py_ssize_t off = slot_offset(o, name);
        PyObject **slot = off >= 0 ? (PyObject **)((char *)o + off) : NULL;
        if (slot && *slot && PyLong_CheckExact(*slot)) {
            v = PyLong_AsLongLong(*slot);
            if (v == -1 && PyErr_Occurred())
                return -1;
            PyObject *nv = PyLong_FromLongLong(v + delta);
            if (!nv)
                return -1;
            PyObject *old = *slot;
            *slot = nv;
            Py_DECREF(old); /* an exact int: no code runs */
            return 0;
        }
    }
    PyObject *cur = PyObject_GetAttr(o, name);
    if (!cur)
        return -1;
    v = PyLong_AsLongLong(cur);
    Py_DECREF(cur);
    if (v == -1 && PyErr_Occurred())
        return -1;
    PyObject *nv = PyLong_FromLongLong(v + delta);
    if (!nv)
        return -1;
    int r = PyObject_SetAttr(o, name, nv);
    Py_DECREF(nv);
    return r;
}

/* d[key] += delta for a dict (collections.Counter included) */
int incr_item(PyObject *d, PyObject *key, long long delta)
{
    long long v = 0;
    PyObject *cur = PyDict_GetItemWithError(d, key); /* borrowed */
    if (!cur && PyErr_Occurred())
        return -1;
    if (cur) {
        v = PyLong_AsLongLong(cur);
        if (v == -1 && PyErr_Occurred())
            return -1;
    }
    PyObject *nv = PyLong_FromLongLong(v + delta);
    if (!nv)
        return -1;
    int r = PyDict_SetItem(d, key, nv);
    Py_DECREF(nv);
    return r;
}

/* A writable, C-contiguous buffer of exactly n items of itemsize bytes. */
int get_array(PyObject *owner, PyObject *name, Py_ssize_t n, Py_ssize_t itemsize,
                     Py_buffer *view)
{
    PyObject *arr = PyObject_GetAttr(owner, name);
    if (!arr) {
        PyErr_Clear();
        return -1;
    }
    int r = PyObject_GetBuffer(arr, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS);
    Py_DECREF(arr);
    if (r < 0) {
        PyErr_Clear();
        return -1;
    }
    if (view->len != n * itemsize || view->itemsize != itemsize) {
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

int get_array_obj(PyObject *arr, Py_ssize_t n, Py_ssize_t itemsize, Py_buffer *view)
{
    if (PyObject_GetBuffer(arr, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        PyErr_Clear();
        return -1;
    }
    if (view->len != n * itemsize || view->itemsize != itemsize) {
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* Whether (ino, page) has a NOTIFY_STORE queued in this engine (mu held). */
static int c_store_queued(Engine *e, uint64_t ino, uint64_t page)
{
    for (batch_t *b = e->head; b; b = b->next)
        if (b->ino == ino)
            for (int k = 0; k < b->nmsg; k++)
                if (b->state[k] == ST_QUEUED && b->page[k] == page)
                    return 1;
    return 0;
}

/* fsimpl's store_queued(ino, page): in the session's Python queue or in ours. */
int store_queued(Engine *e, uint64_t ino, uint64_t page)
{
    int r;
    pthread_mutex_lock(&e->mu);
    r = c_store_queued(e, ino, page);
    pthread_mutex_unlock(&e->mu);
    if (r)
        return 1;
    if (e->py_stores && PyDict_Check(e->py_stores) && PyDict_GET_SIZE(e->py_stores)) {
        PyObject *key = Py_BuildValue("(KK)", (unsigned long long)ino, (unsigned long long)page);
        if (!key)
            return -1;
        r = PyDict_Contains(e->py_stores, key);
        Py_DECREF(key);
        return r;
    }
    return 0;
}

/* Append to batch b, at byte pos, the reply to IOCTL ``unique``: its fuse_out_header
 * and a fuse_ioctl_out of result 0, no flags, no iovs, in a message of ``len`` bytes
 * (the caller writes any bytes past the first 32). */
void add_ioctl_reply(batch_t *b, size_t pos, uint64_t unique, uint32_t len)
{
    unsigned char *p = b->buf + pos;
    put_u32(p, len);
    put_u32(p + 4, 0);
    put_u64(p + 8, unique);
    memset(p + 16, 0, 16);
    b->off[b->nmsg] = pos;
    b->len[b->nmsg++] = len;
}

/* The end of every queueing (the caller holds e->mu and has added its own counters):
 * link batch b at the tail of the writer's queue, unlock, and wake the writer if it
 * sleeps -- after the unlock, so that the woken writer does not block on our mutex; a
 * futex wake costs a syscall, so only then. */
void queue_and_wake(Engine *e, batch_t *b)
{
    if (!b->nready)
        b->nready = b->nmsg;
    b->next = NULL;
    b->t_queued = now_ns();
    b->reply_fd = engine_reply_fd(e);
    e->seq_queued++;
    if (e->tail)
        e->tail->next = b;
    else
        e->head = b;
    e->tail = b;
    e->queued++;
    int wake = e->sleeping;
    pthread_mutex_unlock(&e->mu);
    if (wake)
        pthread_cond_signal(&e->cv);
}

/* winstep: queue REMAP batch b whose first ``ninval`` messages (the INVALs) are final,
 * waking the writer now, while the reader still applies the remap (phase 2).  Safe
 * because every request those INVALs can make the kernel send (a launder WRITE of the
 * replaced page, a READ of the window page) is served under the GIL, which the reader
 * holds until the remap is applied and the batch sealed (docs/decisions.md, "A REMAP's
 * INVALs written while it is applied").  The caller holds e->mu; unlocks it. */
static void queue_early(Engine *e, batch_t *b, int ninval)
{
    b->nready = ninval;
    e->early_batches++;
    queue_and_wake(e, b);
}

/* The end of a batch queued early: its remaining messages (the STOREs, with their
 * data, and the reply) become writable; nmsg = ninval on a failed phase 2 (the reply
 * is then the session's).  The caller holds e->mu; unlocks it. */
static void remap_seal(Engine *e, batch_t *b, int nmsg)
{
    __atomic_store_n(&b->nmsg, nmsg, __ATOMIC_RELEASE);
    __atomic_store_n(&b->nready, nmsg, __ATOMIC_RELEASE);
    e->t_early_seal += now_ns() - b->t_queued;
    int wake = e->sleeping;
    pthread_mutex_unlock(&e->mu);
    if (wake)
        pthread_cond_signal(&e->cv);
}

/* fsimpl _settle: a page pushed earlier whose NOTIFY_STORE is no longer queued is
 * neither pushed nor pending any more (the kernel has it). -1 with an exception set. */
int settle(Engine *e, uint64_t ino, uint64_t page, PyObject *key, PyObject *pushed,
                  PyObject *pending)
{
    int inp = PySet_Contains(pushed, key);
    if (inp <= 0)
        return inp;
    int q = store_queued(e, ino, page);
    if (q != 0)
        return q < 0 ? -1 : 0;
    if (PySet_Discard(pushed, key) < 0)
        return -1;
    if (PyDict_DelItem(pending, key) < 0) {
        if (!PyErr_ExceptionMatches(PyExc_KeyError))
            return -1;
        PyErr_Clear();
    }
    return 0;
}

/* ---------------------------------------------------------------- the remap */


void release_chunk(chunk_views *c)
{
    if (c->have == 2) { /* winlean: views copied from the cache, references held */
        for (int i = 0; i < 4; i++)
            Py_CLEAR(c->hold[i]);
        c->have = 0;
    }
    if (c->have) {
        PyBuffer_Release(&c->bits);
        PyBuffer_Release(&c->frame);
        PyBuffer_Release(&c->pgoff);
        PyBuffer_Release(&c->prot);
        c->have = 0;
    }
}

/* winlean: load_chunk from the buffer cache; 1: not applicable (generic path) */
static int load_chunk_lean(PyObject *chunk, chunk_views *c)
{
    static const Py_ssize_t isz[4] = {1, 8, 8, 1};
    PyObject *names[4] = {s_bits, s_frame, s_pgoff, s_prot};
    Py_buffer *views[4] = {&c->bits, &c->frame, &c->pgoff, &c->prot};
    PyObject *arr[4];
    for (int i = 0; i < 4; i++) {
        arr[i] = slot_ref(chunk, names[i]);
        if (!arr[i])
            return 1;
    }
    for (int i = 0; i < 4; i++) {
        if (lean_array_view(arr[i], CHUNK, isz[i], views[i], &c->hold[i]) < 0) {
            for (int j = 0; j < i; j++)
                Py_CLEAR(c->hold[j]);
            return -1;
        }
    }
    c->have = 2;
    return 0;
}

int load_chunk(PyObject *chunk, chunk_views *c)
{
    if (winlean_on) {
        int r = load_chunk_lean(chunk, c);
        if (r <= 0)
            return r;
    }
    if (get_array(chunk, s_bits, CHUNK, 1, &c->bits) < 0)
        return -1;
    if (get_array(chunk, s_frame, CHUNK, 8, &c->frame) < 0) {
        PyBuffer_Release(&c->bits);
        return -1;
    }
    if (get_array(chunk, s_pgoff, CHUNK, 8, &c->pgoff) < 0) {
        PyBuffer_Release(&c->bits);
        PyBuffer_Release(&c->frame);
        return -1;
    }
    if (get_array(chunk, s_prot, CHUNK, 1, &c->prot) < 0) {
        PyBuffer_Release(&c->bits);
        PyBuffer_Release(&c->frame);
        PyBuffer_Release(&c->pgoff);
        return -1;
    }
    c->have = 1;
    return 0;
}

/* The PTE bits of vpn (the slot after ``slot`` of the chunk ``cbits``, or the first
 * of the next chunk); 0 when there is no such entry or on any error. */
static int pte_bits_at(PyObject *chunks, const uint8_t *cbits, int slot, long long vpn)
{
    if (slot + 1 < CHUNK)
        return cbits[slot + 1];
    PyObject *key = PyLong_FromLongLong(vpn >> CHUNK_SHIFT);
    if (!key) {
        PyErr_Clear();
        return 0;
    }
    PyObject *c = PyDict_GetItemWithError(chunks, key);
    Py_DECREF(key);
    if (!c) {
        PyErr_Clear();
        return 0;
    }
    Py_buffer v;
    if (get_array(c, s_bits, CHUNK, 1, &v) < 0)
        return 0;
    int r = ((const uint8_t *)v.buf)[vpn & (CHUNK - 1)];
    PyBuffer_Release(&v);
    return r;
}

/* Whether nholes more pages fit the mapping's size= budget (fault() charges it a page
 * at a time and fails, SIGBUS, when it cannot). 0: they fit; -1: decline (an error
 * may be set). *budget, mapping.budget, is handed back owned on both: the caller
 * releases it. */
int holes_fit(PyObject *mapping, PyObject **budget, long long nholes)
{
    *budget = PyObject_GetAttr(mapping, s_budget);
    if (!*budget)
        return -1;
    PyObject *fp = PyObject_GetAttr(*budget, s_free_pages); /* a property */
    if (!fp)
        return -1;
    if (fp == Py_None) { /* no size= limit */
        Py_DECREF(fp);
        return 0;
    }
    long long free = PyLong_AsLongLong(fp);
    Py_DECREF(fp);
    if ((free == -1 && PyErr_Occurred()) || free < nholes)
        return -1;
    return 0;
}

/* fault()'s one-hole path for the page ``pg`` of ``pages``: budget.charge(1),
 * arena.alloc1(), pages.insert1(pg, frame, pflags). The new frame (> 0), or -1 with a
 * Python error set (``who`` names the engine in it). No reference is left held. */
long long fault_hole(PyObject *budget, PyObject *arena, PyObject *pages, long long pg,
                     long long pflags, const char *who)
{
    PyObject *r = PyObject_CallMethod(budget, "charge", "i", 1);
    if (!r)
        return -1;
    long got = PyLong_AsLong(r);
    Py_DECREF(r);
    if (got != 1) { /* checked in phase 1: cannot happen */
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_RuntimeError, "%s: size= budget moved", who);
        return -1;
    }
    r = PyObject_CallMethodNoArgs(arena, s_alloc1);
    if (!r)
        return -1;
    long long frame = PyLong_AsLongLong(r);
    Py_DECREF(r);
    if (frame <= 0) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_RuntimeError, "%s: bad frame", who);
        return -1;
    }
    r = PyObject_CallMethod(pages, "insert1", "LLL", pg, frame, pflags);
    if (!r)
        return -1;
    Py_DECREF(r);
    return frame;
}

/* The address of frame ``frame`` after a fault made it (the arena may have grown):
 * *addrs, the caller's reference, is replaced by arena._addrs fetched anew. NULL with
 * a Python error set (``who`` names the engine in it) if the arena is not as
 * expected; the caller releases *addrs on every path. */
unsigned char *new_frame_addr(PyObject *arena, PyObject **addrs, long long frame,
                              long long fps, const char *who)
{
    Py_CLEAR(*addrs);
    *addrs = PyObject_GetAttr(arena, s_addrs);
    if (!*addrs || !PyList_Check(*addrs)) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_RuntimeError, "%s: arena._addrs", who);
        return NULL;
    }
    long long seg = frame / fps, idx = frame % fps;
    if (seg >= PyList_GET_SIZE(*addrs)) {
        PyErr_Format(PyExc_RuntimeError, "%s: frame outside the arena", who);
        return NULL;
    }
    unsigned long long base = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(*addrs, seg));
    if (base == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    return (unsigned char *)(uintptr_t)base + ((size_t)idx << PAGE_SHIFT);
}

/* The checks before changing a window's PTEs in place, shared by the REMAP (here) and
 * the MPROTECT (native/winprot.c): the window is its mm's only listener, the mapping
 * has no page_mkwrite and no write_notify, and the n pages from vpn lie in one
 * page-table chunk that exists already. 0: ok, with *mapping, *pt and *chunks owned
 * and *chunk borrowed from *chunks; -1: decline (e->last_decline says where). On
 * both, the references handed back so far are the caller's to release. */
#define HDECLINE() do { e->last_decline = __LINE__; goto decline; } while (0)
int inplace_chunk(Engine *e, PyObject *mm, PyObject *vma, long long vpn, int n,
                  PyObject **mapping, PyObject **pt, PyObject **chunks, PyObject **chunk)
{
    PyObject *tmp = NULL, *ikey = NULL;
    {
        PyObject *lst = lean_getattr(mm, s_listeners);
        if (!lst)
            HDECLINE();
        int ok = PyList_Check(lst) && PyList_GET_SIZE(lst) == 1; /* the window's only */
        Py_DECREF(lst);
        if (!ok)
            HDECLINE();
    }
    *mapping = lean_getattr(vma, s_mapping);
    if (!*mapping)
        HDECLINE();
    tmp = lean_getattr(*mapping, s_page_mkwrite);
    if (!tmp || tmp != Py_None)
        HDECLINE();
    Py_CLEAR(tmp);
    tmp = lean_getattr(*mapping, s_write_notify);
    if (!tmp)
        HDECLINE();
    if (PyObject_IsTrue(tmp) != 0)
        HDECLINE();
    Py_CLEAR(tmp);

    int slot0 = (int)(vpn & (CHUNK - 1));
    if (slot0 + n > CHUNK)
        HDECLINE(); /* across two page-table chunks: Python */
    *pt = lean_getattr(vma, s_pt);
    if (!*pt)
        HDECLINE();
    *chunks = lean_getattr(*pt, s_chunks);
    if (!*chunks || !PyDict_Check(*chunks))
        HDECLINE();
    ikey = PyLong_FromLongLong(vpn >> CHUNK_SHIFT);
    if (!ikey)
        HDECLINE();
    *chunk = PyDict_GetItemWithError(*chunks, ikey);
    Py_CLEAR(ikey);
    if (!*chunk)
        HDECLINE(); /* _chunk_for_write would make (and charge) it: Python */
    return 0;
decline:
    Py_XDECREF(tmp);
    Py_XDECREF(ikey);
    return -1;
}
#undef HDECLINE

#define DECLINE() do { e->last_decline = __LINE__; goto decline; } while (0)

/*
 * Engine.remap(msg) -> None (declined: nothing changed, answer it in Python) or
 * the number of notifications queued ahead of the reply.
 */
PyObject *Engine_remap(Engine *e, PyObject *arg)
{
    Py_buffer mb;
    PyObject *ws = NULL, *window = NULL, *mm = NULL, *vmas = NULL, *vma = NULL, *mapping = NULL;
    PyObject *pt = NULL, *chunks = NULL, *cached = NULL, *pending = NULL, *pushed = NULL;
    PyObject *pages = NULL, *pframes_d = NULL, *pflags_d = NULL, *arena = NULL, *addrs = NULL;
    PyObject *tstats = NULL, *mmstats = NULL, *fstats = NULL, *ikey = NULL;
    PyObject *wins = NULL, *handles = NULL, *h = NULL, *tmp = NULL, *budget = NULL;
    PyObject *keys[MAXPAGES] = {0}, *olds[MAXPAGES] = {0};
    chunk_views cv = {0};
    Py_buffer pfr = {0}, pfl = {0};
    int have_pc = 0;
    PyObject *pc_hold[2] = {NULL, NULL}; /* winlean: pfr/pfl's arrays, referenced */
    batch_t *b = NULL, *early = NULL; /* early: b, queued before phase 2 (winstep) */
    int ninval_early = 0;
    PyObject *result = NULL;
    int n = 0;

    uint64_t t_entry = now_ns();
    if (PyObject_GetBuffer(arg, &mb, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *m = mb.buf;
    if (winfsync_is_fsync(m, mb.len)) { /* native/winfsync.c */
        result = winfsync(e, m, mb.len);
        PyBuffer_Release(&mb);
        return result;
    }
    if (winprot_is_mprotect(m, mb.len)) { /* native/winprot.c */
        if (!e->prot_enabled)
            goto decline_nobuf;
        result = winprot_mprotect(e, m, mb.len);
        PyBuffer_Release(&mb);
        return result;
    }
    if (winvec_is_remapv(m, mb.len)) { /* native/winvec.c: a short REMAPV */
        if (!e->vec_enabled || e->vec_mode)
            goto decline_nobuf;
        result = winvec_remapv(e, m, mb.len);
        PyBuffer_Release(&mb);
        return result;
    }
    if (winvec_is_query(m, mb.len)) { /* native/winvec.c */
        if (!e->vec_enabled)
            goto decline_nobuf;
        result = winvec_query(e, m, mb.len);
        PyBuffer_Release(&mb);
        return result;
    }
    if (mb.len != IN_HEADER + IOCTL_IN + REMAP_SIZE)
        goto decline_nobuf;
    if (get_u32(m) != (uint32_t)mb.len || get_u32(m + 4) != OP_IOCTL)
        goto decline_nobuf;
    if (get_u32(m + 36) != 0) /* extlen, padding */
        goto decline_nobuf;
    uint64_t unique = get_u64(m + 8), nodeid = get_u64(m + 16);
    const unsigned char *io = m + IN_HEADER;
    uint64_t fh = get_u64(io);
    uint32_t ioflags = get_u32(io + 8), cmd = get_u32(io + 12);
    uint32_t in_size = get_u32(io + 24);
    if (ioflags != 0 || cmd != REMAP_CMD || in_size != REMAP_SIZE)
        goto decline_nobuf;
    const unsigned char *d = io + IOCTL_IN;
    uint64_t start = get_u64(d), size = get_u64(d + 8), pgoff = get_u64(d + 16);
    uint32_t prot = get_u32(d + 24), rflags = get_u32(d + 28);
    int populate;
    /* MAP_CHGPROT: the pages get their own protection (PagerExt.PER_PAGE_PROT); its
     * further conditions (the extension on, prot within the VMA's, VM_MANYPROTS
     * already set) are checked in phase 1 */
    int chg = (rflags & MAP_CHGPROT_) != 0;
    if (chg && !e->prot_enabled)
        goto decline_nobuf;
    uint32_t base_flags = rflags & ~(uint32_t)MAP_CHGPROT_;
    if (base_flags == MAP_POPULATE_)
        populate = 1;
    else if (base_flags == 0 || base_flags == MAP_NONBLOCK_)
        populate = 0;
    else
        goto decline_nobuf;
    if ((prot != 0 && !chg) || prot > (PROT_READ_ | PROT_WRITE_ | PROT_EXEC_) || (size & (PAGE_SIZE - 1)) || size < PAGE_SIZE ||
        size > (uint64_t)MAXPAGES * PAGE_SIZE || (start & (PAGE_SIZE - 1)) ||
        start >= (1ULL << 46) || pgoff >= (1ULL << 46) || nodeid > (uint64_t)LLONG_MAX ||
        fh > (uint64_t)LLONG_MAX)
        goto decline_nobuf;
    n = (int)(size >> PAGE_SHIFT);
    PyBuffer_Release(&mb);

    /* ---- phase 1: look, decide; nothing changes ---- */
    wins = lean_getattr(e->table, s_wins);
    if (!wins || !PyDict_Check(wins))
        DECLINE();
    ikey = PyLong_FromUnsignedLongLong(nodeid);
    if (!ikey)
        DECLINE();
    ws = PyDict_GetItemWithError(wins, ikey); /* borrowed */
    if (!ws)
        DECLINE();
    Py_INCREF(ws);
    Py_CLEAR(ikey);
    /* the descriptor: a handle of this inode, open for writing (else EBADF in Python) */
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
    long long hino, hflags;
    if (attr_ll(h, s_ino, &hino) < 0 || attr_ll(h, s_flags, &hflags) < 0)
        DECLINE();
    if ((uint64_t)hino != nodeid || (hflags & 3) == 0 /* O_RDONLY */)
        DECLINE();
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
        DECLINE(); /* a split window (MPROTECT_VMA) goes the Python way */
    vma = PyList_GET_ITEM(vmas, 0);
    Py_INCREF(vma);
    long long vstart, vend, vflags, vprot, vpgoff, ptebits;
    if (attr_ll(vma, s_start, &vstart) < 0 || attr_ll(vma, s_end, &vend) < 0 ||
        attr_ll(vma, s_flags, &vflags) < 0 || attr_ll(vma, s_prot, &vprot) < 0 ||
        attr_ll(vma, s_pgoff, &vpgoff) < 0 || attr_ll(mm, s_pte_bits, &ptebits) < 0)
        DECLINE();
    if (chg) {
        long long ext;
        if (attr_ll(mm, s_ext, &ext) < 0)
            DECLINE();
        if (!(ext & PAGER_EXT_PER_PAGE_PROT))
            DECLINE(); /* MAP_CHGPROT ignored (prot != 0: EINVAL): Python */
        if ((long long)prot & ~vprot)
            DECLINE(); /* EACCES in Python */
        if (!(vflags & VM_MANYPROTS))
            DECLINE(); /* the first MAP_CHGPROT sets VM_MANYPROTS (an IntFlag): Python */
    }
    if (vstart != waddr || vend != waddr + (npages << PAGE_SHIFT))
        DECLINE();
    if ((vflags & (VM_SHARED | VM_NONLINEAR | VM_CAN_NONLINEAR)) !=
        (VM_SHARED | VM_NONLINEAR | VM_CAN_NONLINEAR))
        DECLINE(); /* the first remap makes the VMA nonlinear: Python */
    long long lo = (long long)(start >> PAGE_SHIFT); /* first window page */
    if (lo + n > npages)
        DECLINE(); /* EINVAL in Python */
    if (ptebits < 1 || ptebits > 62 || (long long)pgoff + n >= (1LL << ptebits))
        DECLINE();
    tmp = lean_getattr(vma, s_private_data);
    if (!tmp)
        DECLINE();
    if (tmp != Py_None)
        DECLINE();
    Py_CLEAR(tmp);
    long long vpn = (waddr + (long long)start) >> PAGE_SHIFT;
    int slot0 = (int)(vpn & (CHUNK - 1));
    PyObject *chunk;
    if (inplace_chunk(e, mm, vma, vpn, n, &mapping, &pt, &chunks, &chunk) < 0)
        goto decline;
    if (load_chunk(chunk, &cv) < 0)
        DECLINE();
    uint8_t *cbits = cv.bits.buf, *cprot = cv.prot.buf;
    int64_t *cframe = cv.frame.buf, *cpgoff = cv.pgoff.buf;
    int npresent = 0, left = 0;
    for (int j = slot0; j < slot0 + n; j++) {
        int bj = cbits[j];
        if (bj & PTE_ANON)
            DECLINE();
        if (bj & PTE_PRESENT)
            npresent++;
        else if (bj)
            left = 1;
    }
    /* any entry outside the range (winlean: stops at the first; the whole 512-entry
     * scan, SHMFS_WINLEAN=0, was a sixth of the REMAP's CPU; the same answer) */
    for (int j = 0; j < slot0 && !(left && winlean_on); j++)
        left |= cbits[j] != 0;
    for (int j = slot0 + n; j < CHUNK && !(left && winlean_on); j++)
        left |= cbits[j] != 0;
    if (!left)
        DECLINE(); /* the zap would free (uncharge) the chunk, set_file_range recharge it */

    cached = lean_getattr(ws, s_cached);
    pending = lean_getattr(ws, s_pending);
    pushed = lean_getattr(ws, s_pushed);
    if (!cached || !pending || !pushed || !PySet_Check(cached) || !PyDict_Check(pending) ||
        !PySet_Check(pushed))
        DECLINE();
    if (lo + n < npages) {
        /* REMAP's snapshot also covers the page after the range (the end comes from the
         * unrounded size): Python refaults it there if it is cached and not present,
         * which the invariant rules out; if it ever is, let Python do it */
        PyObject *k1 = PyLong_FromLongLong(lo + n);
        if (!k1)
            DECLINE();
        int c1 = PySet_Contains(cached, k1);
        Py_DECREF(k1);
        if (c1 < 0)
            DECLINE();
        if (c1 && !(pte_bits_at(chunks, cbits, slot0 + n - 1, vpn + n) & PTE_PRESENT))
            DECLINE();
    }
    int write = (vflags & VM_WRITE) != 0;
    /* a remap without MAP_CHGPROT: the VMA's protection; with it, the page's own */
    long long new_eff = chg ? (long long)prot : vprot;
    int was_cached[MAXPAGES], moved[MAXPAGES], nmoved = 0, nruns = 0;
    long long old_pg[MAXPAGES], old_eff[MAXPAGES];
    for (int k = 0; k < n; k++) {
        int ob = cbits[slot0 + k];
        keys[k] = PyLong_FromLongLong(lo + k);
        if (!keys[k])
            DECLINE();
        was_cached[k] = PySet_Contains(cached, keys[k]);
        if (was_cached[k] < 0)
            DECLINE();
        old_pg[k] = (ob & (PTE_PRESENT | PTE_FILE)) ? cpgoff[slot0 + k]
                                                     : (vpn + k - (vstart >> PAGE_SHIFT)) + vpgoff;
        old_eff[k] = (ob & PTE_OWNPROT) ? cprot[slot0 + k] : vprot;
        moved[k] = was_cached[k] && (old_pg[k] != (long long)pgoff + k || old_eff[k] != new_eff);
        if (was_cached[k] && !moved[k])
            DECLINE(); /* an unchanged cached page: Python refaults it, and does not
                        * push it (the kernel may hold it dirty: fsimpl _push) */
        if (moved[k]) {
            if (!(k > 0 && moved[k - 1]))
                nruns++;
            nmoved++;
            olds[k] = Py_BuildValue("(LL)", old_pg[k], old_eff[k]);
            if (!olds[k])
                DECLINE();
        }
    }

    /* the object pages, for the prefault */
    long long frames[MAXPAGES] = {0};
    int set_pflags[MAXPAGES] = {0};
    const unsigned char *src[MAXPAGES] = {0};
    uint8_t *pfl_p = NULL;
    long long pflag_new = write ? (PG_UPTODATE | PG_DIRTY) : PG_UPTODATE;
    int nholes = 0;
    long long fps_ = 1;
    if (populate) {
        long long msize, nshared, fps;
        if (attr_ll(mapping, s_size, &msize) < 0)
            DECLINE();
        if ((long long)pgoff + n > (msize + PAGE_SIZE - 1) >> PAGE_SHIFT)
            DECLINE(); /* beyond EOF: SIGBUS, the prefault stops there */
        /* handle_mm_fault's protection check, and _push's: readable */
        if (write ? !(new_eff & PROT_WRITE_)
                  : !(new_eff & (PROT_READ_ | PROT_WRITE_ | PROT_EXEC_)))
            DECLINE();
        if (!(new_eff & PROT_READ_))
            DECLINE();
        if (((long long)pgoff >> CHUNK_SHIFT) != (((long long)pgoff + n - 1) >> CHUNK_SHIFT))
            DECLINE(); /* across two page-cache chunks: Python */
        pages = lean_getattr(mapping, s_pages);
        if (!pages)
            DECLINE();
        pframes_d = lean_getattr(pages, s_frames);
        pflags_d = lean_getattr(pages, s_pflags);
        if (!pframes_d || !pflags_d)
            DECLINE();
        int pslot0 = (int)(pgoff & (CHUNK - 1));
        if (PyDict_Check(pframes_d) && PyDict_Check(pflags_d)) {
            PyObject *pkey = PyLong_FromLongLong((long long)pgoff >> CHUNK_SHIFT);
            if (!pkey)
                DECLINE();
            PyObject *fa = PyDict_GetItemWithError(pframes_d, pkey);
            PyObject *fl = fa ? PyDict_GetItemWithError(pflags_d, pkey) : NULL;
            Py_DECREF(pkey);
            if (fa && fl && winlean_on) { /* winlean: cached exports, held arrays */
                if (lean_array_view(fa, CHUNK, 8, &pfr, &pc_hold[0]) < 0)
                    DECLINE();
                if (lean_array_view(fl, CHUNK, 1, &pfl, &pc_hold[1]) < 0)
                    DECLINE();
                have_pc = 2; /* not released: pc_hold is */
                pfl_p = (uint8_t *)pfl.buf + pslot0;
            } else if (fa && fl) {
                if (get_array_obj(fa, CHUNK, 8, &pfr) < 0)
                    DECLINE();
                if (get_array_obj(fl, CHUNK, 1, &pfl) < 0) {
                    PyBuffer_Release(&pfr);
                    DECLINE();
                }
                have_pc = 1;
                pfl_p = (uint8_t *)pfl.buf + pslot0;
            } else if (PyErr_Occurred()) {
                DECLINE();
            }
        } /* else: an empty page cache (every page a hole) */
        arena = lean_getattr(mapping, s_arena);
        if (!arena || attr_ll(arena, s_nshared, &nshared) < 0 || attr_ll(arena, s_fps, &fps) < 0)
            DECLINE();
        if (nshared != 0 || fps <= 0)
            DECLINE(); /* copy_file_range sharing in use: Python (COW rules) */
        fps_ = fps;
        addrs = lean_getattr(arena, s_addrs);
        if (!addrs || !PyList_Check(addrs))
            DECLINE();
        for (int k = 0; k < n; k++) {
            frames[k] = have_pc ? ((int64_t *)pfr.buf)[pslot0 + k] : -1;
            if (frames[k] < 0) { /* a hole: the fault allocates (phase 2) */
                nholes++;
                continue;
            }
            if (frames[k] == 0)
                DECLINE();
            set_pflags[k] = (pfl_p[k] & pflag_new) != pflag_new;
            long long seg = frames[k] / fps, idx = frames[k] % fps;
            if (seg >= PyList_GET_SIZE(addrs))
                DECLINE();
            unsigned long long base = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(addrs, seg));
            if (base == (unsigned long long)-1 && PyErr_Occurred())
                DECLINE();
            src[k] = (const unsigned char *)(uintptr_t)base + ((size_t)idx << PAGE_SHIFT);
        }
        fstats = lean_fstats(mapping, s_fstats);
        if (!fstats)
            DECLINE();
        if (nholes) {
            /* the prefault stops at the first hole that does not fit: decline then */
            /* (a REMAPV's dry run: with the holes of its earlier entries) */
            if (holes_fit(mapping, &budget,
                          nholes + (e->vec_mode == VEC_DRY ? e->vec_holes : 0)) < 0)
                DECLINE();
        }
    }
    tstats = lean_getattr(e->table, s_stats);
    mmstats = lean_getattr(mm, s_stats);
    if (!tstats || !PyDict_Check(tstats) || !mmstats)
        DECLINE();
    /* a prefault that allocates holes changes the object's st_blocks: one attribute-only
     * INVAL of the object after the window's INVALs (fsimpl remap, its finally) */
    long long oino = -1;
    if (nholes) {
        PyObject *o = lean_getattr(ws, s_obj);
        int bad = !o || attr_ll(o, s_ino, &oino) < 0;
        Py_XDECREF(o);
        if (bad)
            DECLINE();
    }
    if (e->vec_mode == VEC_DRY) { /* a REMAPV entry's check (native/winvec.c) */
        e->vec_holes += nholes;
        result = Py_True;
        Py_INCREF(result);
        goto out;
    }
    /* the messages, built before anything changes: an INVAL per run of moved pages,
     * a STORE per page, the reply (not for a REMAPV's entry: winvec.c sends it) */
    {
        size_t cap = (size_t)(nruns + (nholes > 0)) * 40 +
                     (populate ? (size_t)n * (40 + PAGE_SIZE) : 0) + 32;
        b = malloc(sizeof(batch_t) + cap);
        if (!b) {
            PyErr_NoMemory();
            goto fail;
        }
        memset(b, 0, sizeof(batch_t));
        b->cap = cap;
        b->ino = nodeid;
        size_t pos = 0;
        for (int k = 0; k < n; k++) {
            if (!moved[k] || (k > 0 && moved[k - 1]))
                continue;
            int r = k;
            while (r < n && moved[r])
                r++;
            unsigned char *p = b->buf + pos;
            put_u32(p, 40);
            put_u32(p + 4, NOTIFY_INVAL_INODE);
            put_u64(p + 8, 0);
            put_u64(p + 16, nodeid);
            put_u64(p + 24, (uint64_t)(lo + k) << PAGE_SHIFT);
            put_u64(p + 32, (uint64_t)(r - k) << PAGE_SHIFT);
            b->off[b->nmsg] = pos;
            b->len[b->nmsg++] = 40;
            pos += 40;
        }
        if (nholes) {
            unsigned char *p = b->buf + pos;
            put_u32(p, 40);
            put_u32(p + 4, NOTIFY_INVAL_INODE);
            put_u64(p + 8, 0);
            put_u64(p + 16, (uint64_t)oino);
            put_u64(p + 24, (uint64_t)-1); /* attributes only */
            put_u64(p + 32, 0);
            b->off[b->nmsg] = pos;
            b->len[b->nmsg++] = 40;
            pos += 40;
        }
        if (populate) {
            for (int k = 0; k < n; k++) {
                unsigned char *p = b->buf + pos;
                put_u32(p, 40 + PAGE_SIZE);
                put_u32(p + 4, NOTIFY_STORE);
                put_u64(p + 8, 0);
                put_u64(p + 16, nodeid);
                put_u64(p + 24, (uint64_t)(lo + k) << PAGE_SHIFT);
                put_u32(p + 32, PAGE_SIZE);
                put_u32(p + 36, 0);
                /* the data is copied in phase 2, after the prefault (the same frame) */
                b->page[b->nmsg] = (uint64_t)(lo + k);
                b->off[b->nmsg] = pos;
                b->len[b->nmsg++] = 40 + PAGE_SIZE;
                pos += 40 + PAGE_SIZE;
            }
        }
        if (e->vec_mode != VEC_NOREPLY)
            add_ioctl_reply(b, pos, unique, 32);
    }
    /* winstep: the INVALs go now, so that the writer's wake-up overlaps phase 2 */
    ninval_early = nruns + (nholes > 0);
    if (e->early_enabled && e->vec_mode == VEC_NONE && ninval_early > 0) {
        pthread_mutex_lock(&e->mu);
        if (e->early_backoff > 0) { /* backing off (wait_sealed): queued whole below */
            e->early_backoff--;
            pthread_mutex_unlock(&e->mu);
        } else {
            queue_early(e, b, ninval_early);
            early = b;
        }
    }

    /* ---- phase 2: apply (what the Python path does, in its order) ---- */
    if (incr_attr(ws, s_epoch, 1) < 0)
        goto fail;
    /* install_file_pte / zap + populate_range: present PTEs are zapped (released:
     * nothing anonymous here), then every page gets a file PTE */
    if (npresent) {
        if (incr_attr(mmstats, s_zaps, 1) < 0 || incr_attr(mmstats, s_ptes_zapped, npresent) < 0)
            goto fail;
    }
    for (int k = 0; k < n; k++) {
        cbits[slot0 + k] = chg ? (PTE_FILE | PTE_OWNPROT) : PTE_FILE; /* set_file(_range) */
        cprot[slot0 + k] = chg ? (uint8_t)prot : 0;
        cframe[slot0 + k] = 0;
        cpgoff[slot0 + k] = (int64_t)pgoff + k;
    }
    if (incr_attr(mmstats, s_remaps, 1) < 0 || incr_attr(mmstats, s_remap_pages, n) < 0)
        goto fail;
    if (populate) {
        /* make_pages_present -> handle_mm_fault -> do_nonlinear_fault -> fault(): one
         * resident page at a time: MINOR */
        for (int k = 0; k < n; k++) {
            int hole = frames[k] < 0;
            if (hole) { /* fault()'s single-hole path: charge, alloc1, insert1 */
                frames[k] = fault_hole(budget, arena, pages, (long long)pgoff + k,
                                       (long long)pflag_new, "winfast");
                if (frames[k] < 0)
                    goto fail;
                /* the frame's address, now that it exists (the arena may have grown) */
                src[k] = new_frame_addr(arena, &addrs, frames[k], fps_, "winfast");
                if (!src[k])
                    goto fail;
            } else if (set_pflags[k]) {
                pfl_p[k] |= (uint8_t)pflag_new;
                if (incr_attr(pages, s_gen, 1) < 0)
                    goto fail;
            }
            PyObject *fsl[2] = {e->fault_stats, fstats};
            for (int q = 0; q < 2; q++) {
                if (incr_attr(fsl[q], s_faults, 1) < 0 ||
                    incr_attr(fsl[q], write ? s_write : s_read, 1) < 0 ||
                    incr_attr(fsl[q], s_prefault, 1) < 0 || incr_attr(fsl[q], s_via_vma, 1) < 0 ||
                    incr_attr(fsl[q], hole ? s_major : s_minor, 1) < 0 ||
                    incr_attr(fsl[q], s_pages, 1) < 0 ||
                    (hole && incr_attr(fsl[q], s_pages_allocated, 1) < 0))
                    goto fail;
            }
            int nb = PTE_PRESENT | (chg ? PTE_OWNPROT : 0); /* set_present keeps prot */
            if (write)
                nb |= PTE_WRITE | PTE_DIRTY;
            else if (new_eff & PROT_WRITE_)
                nb |= PTE_WRITE; /* _install_bits: shared, writable, no write-notify/sharing */
            cbits[slot0 + k] = (uint8_t)nb;
            cframe[slot0 + k] = frames[k];
            if (incr_attr(mmstats, hole ? s_major : s_minor, 1) < 0)
                goto fail;
        }
    }
    /* fsimpl _changed: moved cached pages -> _drop_cached(ws, moved, old) */
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
    if (nmoved && (incr_item(tstats, s_k_inval_events, nruns) < 0 ||
                   incr_item(tstats, s_k_inval_pages, nmoved) < 0))
        goto fail;
    /* fsimpl _push: the pages the remap made present go to the kernel's cache */
    if (populate) {
        int km = nruns + (nholes > 0); /* the first STORE message */
        for (int k = 0; k < n; k++) {
            memcpy(b->buf + b->off[km + k] + 40, src[k], PAGE_SIZE);
            if (settle(e, nodeid, (uint64_t)(lo + k), keys[k], pushed, pending) < 0)
                goto fail;
            if (PySet_Add(cached, keys[k]) < 0 || PySet_Add(pushed, keys[k]) < 0)
                goto fail;
        }
        if (incr_item(tstats, s_k_pushed, n) < 0)
            goto fail;
    }
    if (incr_item(tstats, s_k_remaps, 1) < 0)
        goto fail;

    /* ---- queue it ---- */
    {
        int natt = nholes > 0;
        long nnotes = nruns + natt + (populate ? n : 0);
        pthread_mutex_lock(&e->mu);
        if (populate)
            for (int k = 0; k < n; k++)
                b->state[nruns + natt + k] = ST_QUEUED;
        e->handled++;
        e->invals += (unsigned long long)(nruns + natt);
        e->stores += populate ? (unsigned long long)n : 0;
        if (e->vec_mode == VEC_NONE) {
            e->t_remap += now_ns() - t_entry;
            e->n_remap++;
        }
        if (early)
            remap_seal(e, b, b->nmsg);
        else
            queue_and_wake(e, b);
        b = NULL;
        early = NULL;
        result = PyLong_FromLong(nnotes);
    }
    goto out;

fail:
    /* only a failed allocation of a Python object can get here, in phase 2 */
    result = NULL;
    if (early) { /* its INVALs are written (harmless: an INVAL only drops a cached
                  * page), the rest not: the session answers the request */
        pthread_mutex_lock(&e->mu);
        remap_seal(e, early, ninval_early);
        b = NULL;
        early = NULL;
    }
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
    if (have_pc == 1) {
        PyBuffer_Release(&pfr);
        PyBuffer_Release(&pfl);
    }
    Py_XDECREF(pc_hold[0]);
    Py_XDECREF(pc_hold[1]);
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
    Py_XDECREF(pages);
    Py_XDECREF(pframes_d);
    Py_XDECREF(pflags_d);
    Py_XDECREF(arena);
    Py_XDECREF(addrs);
    Py_XDECREF(tstats);
    Py_XDECREF(mmstats);
    Py_XDECREF(fstats);
    Py_XDECREF(budget);
    Py_XDECREF(ikey);
    Py_XDECREF(wins);
    Py_XDECREF(handles);
    Py_XDECREF(h);
    Py_XDECREF(tmp);
    return result;

decline_nobuf:
    PyBuffer_Release(&mb);
    e->declined++;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------ other methods */

static long engine_pending(Engine *e)
{
    long n;
    pthread_mutex_lock(&e->mu);
    n = e->queued;
    pthread_mutex_unlock(&e->mu);
    return n;
}

static PyObject *Engine_pending(Engine *e, PyObject *unused)
{
    return PyLong_FromLong(engine_pending(e));
}

static PyObject *Engine_wait_idle(Engine *e, PyObject *unused)
{
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&e->mu);
    while (e->head && e->started)
        pthread_cond_wait(&e->idle, &e->mu);
    pthread_mutex_unlock(&e->mu);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* remap_to(msg, fd): Engine.remap for a request read from ``fd`` (a clone reader's
 * device fd): the batches it queues send their reply there, their notifications to the
 * engine's fd as always (docs/decisions.md, "Clone readers hand window requests to the
 * engine").  The same result as remap. */
static PyObject *Engine_remap_to(Engine *e, PyObject *args)
{
    PyObject *msg;
    int fd;
    if (!PyArg_ParseTuple(args, "Oi", &msg, &fd))
        return NULL;
    if (fd < 0) {
        PyErr_SetString(PyExc_ValueError, "remap_to: a negative fd");
        return NULL;
    }
    /* no other engine call runs meanwhile: every caller holds the GIL and, with clone
     * readers, the fs lock (the C loop runs only while the first reader keeps it) */
    e->reply_fd = fd;
    PyObject *r = Engine_remap(e, msg);
    e->reply_fd = -1;
    return r;
}

static unsigned long long seq_now(Engine *e)
{
    unsigned long long s;
    pthread_mutex_lock(&e->mu);
    s = e->seq_queued;
    pthread_mutex_unlock(&e->mu);
    return s;
}

static PyObject *Engine_queued_seq(Engine *e, PyObject *unused)
{
    return PyLong_FromUnsignedLongLong(seq_now(e));
}

/* wait_written(seq): wait (GIL released) until the first ``seq`` batches ever queued are
 * written -- a reply kept back by a clone reader waits for the engine's batches queued
 * before it, not for the later ones wait_idle would also wait for. */
static PyObject *Engine_wait_written(Engine *e, PyObject *arg)
{
    unsigned long long seq = PyLong_AsUnsignedLongLong(arg);
    if (seq == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&e->mu);
    e->seq_waiters++;
    while (e->seq_written < seq && e->started && e->head)
        pthread_cond_wait(&e->idle, &e->mu);
    e->seq_waiters--;
    pthread_mutex_unlock(&e->mu);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *Engine_store_queued(Engine *e, PyObject *args)
{
    unsigned long long ino, page;
    int r;
    if (!PyArg_ParseTuple(args, "KK", &ino, &page))
        return NULL;
    pthread_mutex_lock(&e->mu);
    r = c_store_queued(e, ino, page);
    pthread_mutex_unlock(&e->mu);
    return PyBool_FromLong(r);
}

/* cancel(ino, first_page, last_page): a READ or write(2) of those pages was answered
 * first; the kernel holds newer data than a store still queued. */
static PyObject *Engine_cancel(Engine *e, PyObject *args)
{
    unsigned long long ino, lo, hi;
    if (!PyArg_ParseTuple(args, "KKK", &ino, &lo, &hi))
        return NULL;
    pthread_mutex_lock(&e->mu);
    for (batch_t *b = e->head; b; b = b->next)
        if (b->ino == ino)
            for (int k = 0; k < b->nmsg; k++)
                if (b->state[k] == ST_QUEUED && b->page[k] >= lo && b->page[k] <= hi)
                    b->state[k] = ST_CANCELLED;
    pthread_mutex_unlock(&e->mu);
    Py_RETURN_NONE;
}

static PyObject *Engine_statistics(Engine *e, PyObject *unused)
{
    PyObject *r;
    pthread_mutex_lock(&e->mu);
    r = Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:l,s:l,s:K,s:K,s:K,s:K,s:l,s:K,s:K,s:l}", "remaps",
                      e->handled, "declined", e->declined, "invals", e->invals, "stores",
                      e->stores, "stores_skipped", e->stores_skipped, "write_errors",
                      e->write_errors, "last_write_errno", e->last_write_errno, "queued",
                      e->queued, "last_decline", e->last_decline, "launders", e->launders,
                      "launders_discarded", e->launders_discarded, "launder_declined",
                      e->launder_declined, "launder_reply_errors", e->reply_errors,
                      "last_launder_decline", e->last_launder_decline, "wstores", e->wstores,
                      "wstore_declined", e->wstore_declined, "last_wstore_decline",
                      e->last_wstore_decline);
    if (r) {
        PyObject *t = Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K}", "handoff_ns",
                                    e->t_handoff, "handoffs", e->n_handoff, "inval_write_ns",
                                    e->t_inval, "inval_writes", e->n_inval, "store_write_ns",
                                    e->t_store, "store_writes", e->n_store, "reply_write_ns",
                                    e->t_reply, "reply_writes", e->n_reply);
        if (!t || PyDict_SetItemString(r, "writer", t) < 0)
            Py_CLEAR(r);
        Py_XDECREF(t);
    }
    if (r) {
        PyObject *t = Py_BuildValue("{s:K,s:K,s:l,s:K}", "reads", e->reads, "declined",
                                    e->read_declined, "last_decline", e->last_read_decline,
                                    "attr_invals", e->read_attr_invals);
        if (!t || PyDict_SetItemString(r, "read", t) < 0)
            Py_CLEAR(r);
        Py_XDECREF(t);
    }
    if (r) { /* the IOCTLs in "remaps" include these (native/winprot.c) */
        PyObject *t = PyLong_FromUnsignedLongLong(e->mprotects);
        if (!t || PyDict_SetItemString(r, "mprotects", t) < 0)
            Py_CLEAR(r);
        Py_XDECREF(t);
    }
    if (r) { /* and these (native/winvec.c) */
        PyObject *t = PyLong_FromUnsignedLongLong(e->queries);
        if (!t || PyDict_SetItemString(r, "queries", t) < 0)
            Py_CLEAR(r);
        Py_XDECREF(t);
        t = r ? PyLong_FromUnsignedLongLong(e->remapvs) : NULL;
        if (r && (!t || PyDict_SetItemString(r, "remapvs", t) < 0))
            Py_CLEAR(r);
        Py_XDECREF(t);
        t = r ? PyLong_FromUnsignedLongLong(e->refaults) : NULL;
        if (r && (!t || PyDict_SetItemString(r, "mprotect_refaults", t) < 0))
            Py_CLEAR(r);
        Py_XDECREF(t);
    }
    if (r) { /* native/winwrite.c: the object INVALs of stores (also in "invals") */
        PyObject *t = PyLong_FromUnsignedLongLong(e->wstore_invals);
        if (!t || PyDict_SetItemString(r, "wstore_invals", t) < 0)
            Py_CLEAR(r);
        Py_XDECREF(t);
        t = r ? PyLong_FromUnsignedLongLong(e->wstore_faults) : NULL;
        if (r && (!t || PyDict_SetItemString(r, "wstore_faults", t) < 0))
            Py_CLEAR(r);
        Py_XDECREF(t);
    }
    if (r) { /* replies written to a clone reader's fd (Engine.remap_to) */
        PyObject *t = PyLong_FromUnsignedLongLong(e->clone_replies);
        if (!t || PyDict_SetItemString(r, "clone_replies", t) < 0)
            Py_CLEAR(r);
        Py_XDECREF(t);
    }
    if (r) { /* winstep: REMAP batches queued before phase 2; the writer's waits */
        PyObject *t = Py_BuildValue("{s:K,s:K,s:K,s:i,s:K,s:K,s:K,s:K}", "batches",
                                    e->early_batches, "spins", e->early_spins, "sleeps",
                                    e->early_sleeps, "enabled", e->early_enabled, "seal_ns",
                                    e->t_early_seal, "remap_ns", e->t_remap, "remaps",
                                    e->n_remap, "backoffs", e->early_backoffs);
        if (!t || PyDict_SetItemString(r, "early", t) < 0)
            Py_CLEAR(r);
        Py_XDECREF(t);
    }
    if (r) { /* native/winfsync.c: FSYNCs answered (not in "remaps"), queued, declined */
        PyObject *t = Py_BuildValue("{s:K,s:K,s:K}", "answered", e->fsyncs, "queued",
                                    e->fsyncs_queued, "declined", e->fsync_declined);
        if (!t || PyDict_SetItemString(r, "fsync", t) < 0)
            Py_CLEAR(r);
        Py_XDECREF(t);
    }
    if (r) { /* winlean: process-wide; exports made (a miss) and reused (a hit) */
        PyObject *t = Py_BuildValue("{s:i,s:K,s:K,s:K}", "enabled", winlean_on, "exports",
                                    lean_exports, "reuses", lean_reuses, "slot_lookups",
                                    lean_slot_misses);
        if (!t || PyDict_SetItemString(r, "lean", t) < 0)
            Py_CLEAR(r);
        Py_XDECREF(t);
    }
    pthread_mutex_unlock(&e->mu);
    return r;
}

static void stop_thread(Engine *e)
{
    if (!e->started)
        return;
    pthread_mutex_lock(&e->mu);
    e->stop = 1;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    Py_BEGIN_ALLOW_THREADS
    pthread_join(e->thread, NULL);
    Py_END_ALLOW_THREADS
    e->started = 0;
}

static PyObject *Engine_close(Engine *e, PyObject *unused)
{
    stop_thread(e); /* writes what is queued first */
    winlean_clear(); /* the cached types and array exports (rebuilt on demand) */
    Py_RETURN_NONE;
}

static int Engine_init(Engine *e, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"fd", "table", "fault_stats", "py_stores", "prot", "vec", NULL};
    int fd, prot = 1, vec = 1;
    PyObject *table, *fstats, *stores;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iOOO|pp", kwlist, &fd, &table, &fstats, &stores,
                                     &prot, &vec))
        return -1;
    e->prot_enabled = prot;
    e->vec_enabled = vec;
    { /* native/winwrite.c: a store over an object page the kernel caches; 0: Python */
        const char *v = getenv("SHMFS_WINFAST_OINVAL");
        e->wstore_inval = !(v && strcmp(v, "0") == 0);
        v = getenv("SHMFS_WINFAST_WFAULT"); /* and one that faults the page in */
        e->wstore_fault = !(v && strcmp(v, "0") == 0);
        v = getenv("SHMFS_WINFAST_FSYNC"); /* native/winfsync.c: the FSYNC */
        e->fsync_enabled = !(v && strcmp(v, "0") == 0);
        v = getenv("SHMFS_WINFAST_EARLY"); /* a REMAP's INVALs before its phase 2; */
        e->early_enabled = !(v && strcmp(v, "0") == 0); /* "2": the writer never spins */
        if (v && strcmp(v, "2") == 0)
            e->early_enabled = 2;
        v = getenv("SHMFS_WINLEAN"); /* slot reads, cached array exports (process-wide) */
        winlean_on = !(v && strcmp(v, "0") == 0);
    }
    if (e->started) {
        PyErr_SetString(PyExc_RuntimeError, "Engine already started");
        return -1;
    }
    PyObject *fs = PyObject_GetAttrString(table, "fs");
    if (!fs)
        return -1;
    e->fd = fd;
    Py_INCREF(table);
    Py_INCREF(fstats);
    Py_INCREF(stores);
    Py_XSETREF(e->table, table);
    Py_XSETREF(e->fs, fs);
    Py_XSETREF(e->fault_stats, fstats);
    Py_XSETREF(e->py_stores, stores);
    if (pthread_create(&e->thread, NULL, writer_main, e) != 0) {
        PyErr_SetString(PyExc_OSError, "cannot start the winfast writer thread");
        return -1;
    }
    e->started = 1;
    return 0;
}

static PyObject *Engine_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    Engine *e = (Engine *)type->tp_alloc(type, 0);
    if (!e)
        return NULL;
    e->fd = -1;
    e->reply_fd = -1;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    pthread_cond_init(&e->idle, NULL);
    return (PyObject *)e;
}

static void Engine_dealloc(Engine *e)
{
    stop_thread(e);
    while (e->head) { /* only if the thread never ran */
        batch_t *b = e->head;
        e->head = b->next;
        free(b);
    }
    Py_XDECREF(e->table);
    Py_XDECREF(e->fs);
    Py_XDECREF(e->fault_stats);
    Py_XDECREF(e->py_stores);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    pthread_cond_destroy(&e->idle);
    Py_TYPE(e)->tp_free((PyObject *)e);
}

static PyMethodDef Engine_methods[] = {
    {"remap", (PyCFunction)Engine_remap, METH_O,
     "remap(msg) -> None (declined, nothing changed) or the notifications queued"},
    {"remap_to", (PyCFunction)Engine_remap_to, METH_VARARGS,
     "remap_to(msg, fd): remap of a request read from fd, its reply written there"},
    {"queued_seq", (PyCFunction)Engine_queued_seq, METH_NOARGS,
     "how many batches were ever queued"},
    {"wait_written", (PyCFunction)Engine_wait_written, METH_O,
     "wait_written(seq): wait (GIL released) until the first seq batches are written"},
    {"pending", (PyCFunction)Engine_pending, METH_NOARGS, "batches queued, not yet written"},
    {"wait_idle", (PyCFunction)Engine_wait_idle, METH_NOARGS,
     "wait (GIL released) until every queued batch is written"},
    {"store_queued", (PyCFunction)Engine_store_queued, METH_VARARGS,
     "store_queued(ino, page): a NOTIFY_STORE of that page is queued here"},
    {"cancel", (PyCFunction)Engine_cancel, METH_VARARGS,
     "cancel(ino, first, last): drop queued stores of those pages"},
    {"write", (PyCFunction)Engine_write, METH_VARARGS,
     "write(msg, fd) -> None (declined, nothing changed) or 0 / the errno of the reply "
     "write: a WRITE of a window answered (native/winlaunder.c, winwrite.c)"},
    {"read", (PyCFunction)Engine_read, METH_VARARGS,
     "read(msg, fd) -> None (declined) or 0 / the errno of the reply write: a READ of "
     "window pages answered (native/winread.c)"},
    {"statistics", (PyCFunction)Engine_statistics, METH_NOARGS, "counters"},
    {"close", (PyCFunction)Engine_close, METH_NOARGS, "write what is queued, stop the thread"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mount.server._winfast.Engine",
    .tp_basicsize = sizeof(Engine),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The window REMAP fast path and its notification writer thread.",
    .tp_new = Engine_new,
    .tp_init = (initproc)Engine_init,
    .tp_dealloc = (destructor)Engine_dealloc,
    .tp_methods = Engine_methods,
};

static struct PyModuleDef moddef = {
    PyModuleDef_HEAD_INIT, "_winfast", "Window REMAP fast path (native/winfast.c).", -1, NULL,
};

#define INTERN(var, text) \
    do { if (!((var) = PyUnicode_InternFromString(text))) return NULL; } while (0)

PyMODINIT_FUNC PyInit__winfast(void)
{
    INTERN(s_wins, "wins");
    INTERN(s_budget, "budget");
    INTERN(s_free_pages, "free_pages");
    INTERN(s_alloc1, "alloc1");
    INTERN(s_major, "major");
    INTERN(s_pages_allocated, "pages_allocated");
    INTERN(s_handles, "_handles");
    INTERN(s_ino, "ino");
    INTERN(s_obj, "obj");
    INTERN(s_flags, "flags");
    INTERN(s_window, "window");
    INTERN(s_mm, "mm");
    INTERN(s_vmas, "_vmas");
    INTERN(s_start, "start");
    INTERN(s_end, "end");
    INTERN(s_prot, "prot");
    INTERN(s_pgoff, "pgoff");
    INTERN(s_mapping, "mapping");
    INTERN(s_pt, "pt");
    INTERN(s_chunks, "_chunks");
    INTERN(s_bits, "bits");
    INTERN(s_frame, "frame");
    INTERN(s_cached, "cached");
    INTERN(s_pending, "pending");
    INTERN(s_pushed, "pushed");
    INTERN(s_epoch, "epoch");
    INTERN(s_stats, "stats");
    INTERN(s_size, "size");
    INTERN(s_pages, "pages");
    INTERN(s_frames, "_frames");
    INTERN(s_pflags, "_flags");
    INTERN(s_gen, "gen");
    INTERN(s_arena, "arena");
    INTERN(s_nshared, "nshared");
    INTERN(s_fps, "fps");
    INTERN(s_addrs, "_addrs");
    INTERN(s_fstats, "fstats");
    INTERN(s__fstats, "_fstats");
    INTERN(s_listeners, "_listeners");
    INTERN(s_pte_bits, "pte_file_max_bits");
    INTERN(s_ext, "ext");
    INTERN(s_write_notify, "write_notify");
    INTERN(s_page_mkwrite, "page_mkwrite");
    INTERN(s_private_data, "private_data");
    INTERN(s_zaps, "zaps");
    INTERN(s_ptes_zapped, "ptes_zapped");
    INTERN(s_remaps, "remaps");
    INTERN(s_remap_pages, "remap_pages");
    INTERN(s_minor, "minor");
    INTERN(s_faults, "faults");
    INTERN(s_read, "read");
    INTERN(s_write, "write");
    INTERN(s_prefault, "prefault");
    INTERN(s_via_vma, "via_vma");
    INTERN(s_npages, "npages");
    INTERN(s_address, "address");
    INTERN(s_k_remaps, "remaps");
    INTERN(s_k_pushed, "pushed_pages");
    INTERN(s_k_inval_events, "inval_events");
    INTERN(s_k_inval_pages, "inval_pages");
    if (winlaunder_init() < 0 || winwrite_init() < 0 || winread_init() < 0 ||
        winprot_init() < 0 || winvec_init() < 0 || winfsync_init() < 0)
        return NULL;
    if (PyType_Ready(&EngineType) < 0)
        return NULL;
    PyObject *mod = PyModule_Create(&moddef);
    if (!mod)
        return NULL;
    Py_INCREF(&EngineType);
    if (PyModule_AddObject(mod, "Engine", (PyObject *)&EngineType) < 0) {
        Py_DECREF(&EngineType);
        Py_DECREF(mod);
        return NULL;
    }
    /* the entry points as C functions, for the C request loop (winfast_api.h) */
    static winfast_api_t api;
    api.version = WINFAST_API_VERSION;
    api.type = &EngineType;
    api.ioctl = (PyObject * (*)(PyObject *, PyObject *))Engine_remap;
    api.read = (PyObject * (*)(PyObject *, PyObject *))Engine_read;
    api.write = (PyObject * (*)(PyObject *, PyObject *))Engine_write;
    api.pending = (long (*)(PyObject *))engine_pending;
    PyObject *cap = PyCapsule_New(&api, WINFAST_API_CAPSULE, NULL);
    if (!cap || PyModule_AddObject(mod, "_C_API", cap) < 0) {
        Py_XDECREF(cap);
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
