/*
 * Shared by the two halves of mount.server._winfast: native/winfast.c (the REMAP,
 * the writer thread, the module) and native/winlaunder.c (the launder WRITE).
 */
#ifndef SHMFS_WINFAST_H
#define SHMFS_WINFAST_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define PAGE_SHIFT 12
#define PAGE_SIZE 4096
#define CHUNK_SHIFT 9
#define CHUNK 512

#define OP_IOCTL 39
#define OP_FSYNC 20
#define IN_HEADER 40
#define IOCTL_IN 32
#define REMAP_SIZE 32
#define REMAP_CMD 0x40205302u
#define NOTIFY_INVAL_INODE 2
#define NOTIFY_STORE 4

#define PTE_PRESENT 0x01
#define PTE_FILE 0x02
#define PTE_WRITE 0x04
#define PTE_DIRTY 0x08
#define PTE_ANON 0x10
#define PTE_OWNPROT 0x20

#define PG_UPTODATE 0x1
#define PG_DIRTY 0x2

#define VM_WRITE 0x2
#define VM_SHARED 0x8
#define VM_NONLINEAR 0x00800000
#define VM_CAN_NONLINEAR 0x08000000

#define PROT_READ_ 0x1
#define PROT_WRITE_ 0x2
#define PROT_EXEC_ 0x4

#define MAP_POPULATE_ 0x8000
#define MAP_NONBLOCK_ 0x10000
#define MAP_CHGPROT_ 0x20000 /* vmcore.vma.MAP_CHGPROT */
#define VM_MANYPROTS 0x40000000 /* vmcore.vma.VmFlags.MANYPROTS */
#define PAGER_EXT_PER_PAGE_PROT 0x2 /* vmcore.vma.PagerExt.PER_PAGE_PROT */

/* ------------------------------------------------------------------ batches */

enum { ST_NONE = 0, ST_QUEUED, ST_CANCELLED, ST_WRITTEN };

#define MAXPAGES 16 /* pages of one REMAP the engine takes (vlm_window's slots: 2) */
#define MAXMSG (2 * MAXPAGES + 1)

typedef struct batch {
    struct batch *next;
    int nmsg;
    size_t off[MAXMSG], len[MAXMSG];
    /* per message: ST_NONE (not a store) or the state of its NOTIFY_STORE */
    int state[MAXMSG];
    uint64_t page[MAXMSG]; /* the window page a store is of */
    uint64_t ino;
    uint64_t t_queued; /* CLOCK_MONOTONIC ns when queued: the hand-off's start */
    int reply_fd; /* where its reply (the message with a unique) goes: queue_and_wake */
    /* the messages the writer may write: nmsg (queue_and_wake), or for a REMAP queued
     * early (winstep: its INVALs before the reader has applied the remap) the INVALs
     * until the reader seals it (remap_seal); read and set under e->mu, or atomically */
    int nready;
    size_t cap;
    unsigned char buf[]; /* the messages, back to back */
} batch_t;

typedef struct {
    PyObject_HEAD
    int fd;
    PyObject *table;       /* fsimpl WindowTable */
    PyObject *fs;          /* its ShmFs */
    PyObject *fault_stats; /* vmcore.fault.FAULT_STATS */
    PyObject *py_stores;   /* the session's own queued stores: {(ino, page): gen} */
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv, idle;
    batch_t *head, *tail;
    long queued;
    int stop;
    int sleeping; /* the writer waits on cv: only then does a new batch signal it */
    /* counters */
    unsigned long long handled, declined, invals, stores, stores_skipped, write_errors;
    unsigned long long last_write_errno;
    long last_decline; /* source line of the last decline after the header checks */
    /* the launder (native/winlaunder.c) */
    unsigned long long launders, launders_discarded, launder_declined, reply_errors;
    long last_launder_decline;
    /* where the writer's time goes (ns, and how many): queue -> its first write
     * (the hand-off), and the write(2) of each kind of message; an INVAL's write
     * includes the launder the kernel makes us answer inside it */
    unsigned long long t_handoff, n_handoff, t_inval, n_inval, t_store, n_store, t_reply,
        n_reply;
    /* the store through the page table (native/winwrite.c) */
    unsigned long long wstores, wstore_declined;
    /* a store over object pages the kernel caches: their INVALs queued after the
     * reply (wstore_invals of them); wstore_inval 0 (SHMFS_WINFAST_OINVAL=0): Python */
    int wstore_inval;
    unsigned long long wstore_invals;
    /* a store into a window page that is not present: its fault (one page) in C, the
     * count; wstore_fault 0 (SHMFS_WINFAST_WFAULT=0): Python */
    int wstore_fault;
    unsigned long long wstore_faults;
    long last_wstore_decline;
    /* the READ (native/winread.c) */
    unsigned long long reads, read_declined;
    /* READs whose fault allocated a hole: the object's attribute-only INVAL written
     * before the reply (also counted in the session's notifications) */
    unsigned long long read_attr_invals;
    long last_read_decline;
    /* MAP_CHGPROT remaps and per-page MPROTECTs (native/winprot.c); 0: both Python */
    int prot_enabled;
    unsigned long long mprotects;
    /* the QUERY and an MPROTECT's refault of unchanged cached pages (native/winvec.c);
     * 0: Python */
    int vec_enabled;
    unsigned long long queries, refaults, remapvs;
    /* Engine_remap on a REMAPV's entry: VEC_DRY checks only (phase 1, adding its holes
     * to vec_holes), VEC_NOREPLY applies it without the reply; 0 otherwise */
    int vec_mode;
    long long vec_holes;
    /* the fd of the request being answered (Engine.remap_to: a clone reader's) or -1
     * (e->fd); a batch's reply goes there, its notifications to e->fd.  seq_queued /
     * seq_written count batches (Engine.queued_seq / wait_written), clone_replies the
     * replies written to another fd than e->fd (docs/decisions.md, "Clone readers hand
     * window requests to the engine") */
    int reply_fd, seq_waiters;
    unsigned long long seq_queued, seq_written, clone_replies;
    /* FSYNC (native/winfsync.c): answered, of them queued behind batches, declined;
     * fsync_enabled 0 (SHMFS_WINFAST_FSYNC=0): Python */
    int fsync_enabled;
    unsigned long long fsyncs, fsyncs_queued, fsync_declined;
    /* winstep: a REMAP's INVALs queued (the writer woken) before its phase 2, the rest
     * of the batch sealed after it; early_enabled 0 (SHMFS_WINFAST_EARLY=0): one batch
     * queued at the end, as before.  early_batches queued so; early_spins / early_sleeps:
     * the writer reached an unsealed batch's end and spun / then slept for the seal */
    int early_enabled;
    unsigned long long early_batches, early_spins, early_sleeps;
    unsigned long long t_early_seal; /* ns from queue_early to remap_seal, summed */
    /* ns in Engine_remap for the one-REMAP batches it queued (entry -> queued), and
     * how many: the reader's share of a step (docs/performance.md, winstep) */
    unsigned long long t_remap, n_remap;
    /* REMAPs left to queue whole after the writer slept for a seal; how often it began */
    long early_backoff;
    unsigned long long early_backoffs;
} Engine;

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static inline void put_u32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void put_u64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint32_t get_u32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t get_u64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* the fd the reply of the request being answered goes to: the one it was read from
 * (Engine.remap_to: a clone reader's), else the engine's */
static inline int engine_reply_fd(const Engine *e)
{
    return e->reply_fd >= 0 ? e->reply_fd : e->fd;
}

/* helpers of winfast.c (each documented there) */
int attr_ll(PyObject *o, PyObject *name, long long *out);
int incr_attr(PyObject *o, PyObject *name, long long delta);
int incr_item(PyObject *d, PyObject *key, long long delta);
int get_array(PyObject *owner, PyObject *name, Py_ssize_t n, Py_ssize_t itemsize,
              Py_buffer *view);
int get_array_obj(PyObject *arr, Py_ssize_t n, Py_ssize_t itemsize, Py_buffer *view);
int store_queued(Engine *e, uint64_t ino, uint64_t page);
void queue_and_wake(Engine *e, batch_t *b); /* e->mu held; unlocks it */
void add_ioctl_reply(batch_t *b, size_t pos, uint64_t unique, uint32_t len);
int settle(Engine *e, uint64_t ino, uint64_t page, PyObject *key, PyObject *pushed,
           PyObject *pending);
/* the four arrays of a page-table chunk, held as buffers (load_chunk: 0 ok, -1 none
 * held, error cleared as get_array leaves it; release_chunk: a no-op unless loaded) */
typedef struct {
    Py_buffer bits, frame, pgoff, prot;
    int have;          /* 1: own exports; 2: winlean, copies of cached exports */
    PyObject *hold[4]; /* have == 2: the four arrays, referenced */
} chunk_views;
int load_chunk(PyObject *chunk, chunk_views *c);
/* winlean (winfast.c): SHMFS_WINLEAN, slot reads and cached array exports */
extern int winlean_on;
PyObject *lean_getattr(PyObject *o, PyObject *name);
PyObject *lean_fstats(PyObject *mapping, PyObject *name);
int lean_array_view(PyObject *arr, Py_ssize_t n, Py_ssize_t itemsize, Py_buffer *view,
                    PyObject **hold);
void winlean_clear(void);
void release_chunk(chunk_views *c);
int holes_fit(PyObject *mapping, PyObject **budget, long long nholes);
long long fault_hole(PyObject *budget, PyObject *arena, PyObject *pages, long long pg,
                     long long pflags, const char *who);
unsigned char *new_frame_addr(PyObject *arena, PyObject **addrs, long long frame,
                              long long fps, const char *who);
int inplace_chunk(Engine *e, PyObject *mm, PyObject *vma, long long vpn, int n,
                  PyObject **mapping, PyObject **pt, PyObject **chunks, PyObject **chunk);

/* winlaunder.c: Engine.write, the launder (a write-back with a pending target) */
#define MAXW 16 /* pages of one WRITE the engine takes */
int winlaunder_init(void);
PyObject *Engine_write(Engine *e, PyObject *args);
int write_reply(Engine *e, int fd, uint64_t unique, uint32_t size);
int shown_and_cached(PyObject *table_by_mm, PyObject *vma, const long long *pgs, int npg,
                     PyObject *self_ws, long long self_lo, long long self_hi);
int window_and_handle(Engine *e, uint64_t nodeid, uint64_t fh, PyObject **wins,
                      PyObject **ikey, PyObject **ws, PyObject **inodes, PyObject **inode,
                      PyObject **handles, PyObject **h, long *line);

/* winwrite.c: a WRITE of window pages through the page table */
typedef struct {
    Engine *e;
    int fd;
    const unsigned char *data;
    uint64_t unique, nodeid, off;
    uint32_t size, wflags;
    PyObject *ws, *inode, *handle; /* borrowed */
} wreq_t;
int winwrite_init(void);
PyObject *winwrite_store(wreq_t *r);

/* winviews.c: another window's cached views of stored object pages (winwrite.c's) */
#define MAXHV 8   /* other windows' VMAs whose cached pages a store invalidates */
#define MAXHIT 32 /* cached pages of one such VMA; more: Python */
int winviews_init(void);
/* a nonlinear VMA of the object as the window it belongs to (vmaview_get: 1 set, 0
 * not a window's or nothing cached, -1 cannot tell); shared by the reverse-map
 * scans of winviews.c and winlaunder.c */
typedef struct {
    PyObject *ws, *cached, *chunks; /* WinState, its cached set, vma.pt._chunks: new refs */
    long long start_vpn, npages;    /* the VMA's first vpn and its pages */
    long long lo, vpgoff;           /* window page of the VMA's first page; vma.pgoff */
} vmaview_t;
int vmaview_get(PyObject *table_by_mm, PyObject *vma, vmaview_t *v);
void vmaview_clear(vmaview_t *v);
int vmaview_next(vmaview_t *v, Py_ssize_t *pos, long long pmin, long long pmax,
                 long long *vpn0, Py_buffer *bv, Py_buffer *pv);
int vmaview_none_at(vmaview_t *v, long long pg, long long *vpn);
int pgoffs_hold(const int64_t *a, int n, int64_t lo, int64_t hi);
int cached_showing(PyObject *table_by_mm, PyObject *vma, long long pmin, long long pmax,
                   PyObject *self_ws, long long self_lo, long long self_hi, PyObject **hws,
                   long long *hits, int *nh);
int cancel_stores(Engine *e, uint64_t ino, long long first, long long last);

/* winprot.c: the per-page MPROTECT of a window, taken by Engine.remap */
int winprot_init(void);
int winprot_is_mprotect(const unsigned char *m, Py_ssize_t len);
PyObject *winprot_mprotect(Engine *e, const unsigned char *m, Py_ssize_t len);

/* winread.c: Engine.read, the READ of window pages */
int winread_init(void);
PyObject *Engine_read(Engine *e, PyObject *args);

/* winfast.c: Engine.remap (the REMAP; the other kinds are dispatched from it) */
PyObject *Engine_remap(Engine *e, PyObject *arg);
enum { VEC_NONE = 0, VEC_DRY, VEC_NOREPLY };

/* winvec.c: the QUERY and short REMAPV of a window, taken by Engine.remap */
int winvec_init(void);
int winvec_is_query(const unsigned char *m, Py_ssize_t len);
PyObject *winvec_query(Engine *e, const unsigned char *m, Py_ssize_t len);
int winvec_is_remapv(const unsigned char *m, Py_ssize_t len);
PyObject *winvec_remapv(Engine *e, const unsigned char *m, Py_ssize_t len);
/* ... and the refault of an MPROTECT's unchanged cached page (native/winprot.c) */
int winvec_refault_frame(PyObject *mapping, long long pgoff, long long *frame);
int winvec_refault(Engine *e, PyObject *mapping, PyObject *mmstats);

/* winfsync.c: the FSYNC of a file, taken by Engine.remap */
int winfsync_init(void);
int winfsync_is_fsync(const unsigned char *m, Py_ssize_t len);
PyObject *winfsync(Engine *e, const unsigned char *m, Py_ssize_t len);

#endif
