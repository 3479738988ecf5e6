/*
 * libshmfs_rfp.so: remap_file_pages(2) for unmodified programs on shmfs (issue 16).
 *
 * Preloaded by `shmfs run PROGRAM ...`.  A MAP_SHARED mmap of a regular file on a
 * shmfs mount is replaced by an mmap of a *window* over that file (docs/windows.md):
 * the library GRANTs on the program's own descriptor, creates an unnamed file
 * (O_TMPFILE, else a hidden name it unlinks at once) on the same mount, ATTACHes it
 * linearly at the mapping's offset and maps it MAP_FIXED over the mapping the real
 * mmap made.  remap_file_pages() on such a mapping becomes the window's REMAP ioctl,
 * with the 2.6.23 rules (kernel-semantics.md section 2.1) checked by the daemon and by
 * the library for the part only it knows (the mapping's own bounds).  The process
 * keeps one VMA per window (plus one per run of pages given their own protection by
 * MAP_CHGPROT), so vm.max_map_count is never the limit.
 *
 * Everything else passes straight to the next definition (dlsym RTLD_NEXT).  The
 * table of mappings is a fixed array behind one mutex: no allocation anywhere, so a
 * signal handler that calls mmap/munmap cannot deadlock in malloc (it can on our
 * mutex if it interrupts the same thread inside the library: as for malloc itself,
 * mmap is not async-signal-safe by POSIX either).
 *
 * Copyright: the shmfs project.  No kernel or libfuse code was copied.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#ifndef FUSE_SUPER_MAGIC
#define FUSE_SUPER_MAGIC 0x65735546
#endif
#ifndef MAP_CHGPROT
#define MAP_CHGPROT 0x20000
#endif
#ifndef O_TMPFILE
#define O_TMPFILE (020000000 | O_DIRECTORY)
#endif

#define PG 4096UL
#define PGMASK (~(PG - 1))
#define PROT_RW (PROT_READ | PROT_WRITE)

/* ---- the window ABI (docs/windows.md "ABI") -------------------------------- */
struct shmfs_win_grant { uint32_t prot, flags; uint8_t token[16]; };
struct shmfs_win_attach { uint8_t token[16]; uint64_t size, pgoff; uint32_t prot, flags; };
struct shmfs_win_remap { uint64_t start, size, pgoff; uint32_t prot, flags; };
struct shmfs_win_mprotect { uint64_t start, size; uint32_t prot, flags; };
struct shmfs_win_madvise { uint64_t start, size; uint32_t advice, flags; };
#define SHMFS_IOC_WIN_ATTACH   _IOW('S', 1, struct shmfs_win_attach)
#define SHMFS_IOC_WIN_REMAP    _IOW('S', 2, struct shmfs_win_remap)
#define SHMFS_IOC_WIN_MPROTECT _IOW('S', 3, struct shmfs_win_mprotect)
#define SHMFS_IOC_WIN_MADVISE  _IOW('S', 4, struct shmfs_win_madvise)
#define SHMFS_IOC_WIN_GRANT    _IOWR('S', 9, struct shmfs_win_grant)
#define SHMFS_REMAP_POPULATE   0x08000

_Static_assert(sizeof(struct shmfs_win_grant) == 24, "grant");
_Static_assert(sizeof(struct shmfs_win_attach) == 40, "attach");
_Static_assert(sizeof(struct shmfs_win_remap) == 32, "remap");

/* ---- the real functions ------------------------------------------------------ */
typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);
typedef int (*munmap_fn)(void *, size_t);
typedef int (*mprotect_fn)(void *, size_t, int);
typedef int (*madvise_fn)(void *, size_t, int);
typedef int (*rfp_fn)(void *, size_t, int, size_t, int);
typedef void *(*mremap_fn)(void *, size_t, size_t, int, ...);
typedef long (*syscall_fn)(long, ...);

static mmap_fn real_mmap, real_mmap64;
static munmap_fn real_munmap;
static mprotect_fn real_mprotect;
static madvise_fn real_madvise;
static rfp_fn real_rfp;
static mremap_fn real_mremap;
static syscall_fn real_syscall;

static void resolve(void) {
    if (real_munmap)
        return;
    real_mmap = (mmap_fn)dlsym(RTLD_NEXT, "mmap");
    real_mmap64 = (mmap_fn)dlsym(RTLD_NEXT, "mmap64");
    if (!real_mmap64)
        real_mmap64 = real_mmap;
    real_mprotect = (mprotect_fn)dlsym(RTLD_NEXT, "mprotect");
    real_madvise = (madvise_fn)dlsym(RTLD_NEXT, "madvise");
    real_rfp = (rfp_fn)dlsym(RTLD_NEXT, "remap_file_pages");
    real_mremap = (mremap_fn)dlsym(RTLD_NEXT, "mremap");
    real_syscall = (syscall_fn)dlsym(RTLD_NEXT, "syscall");
    real_munmap = (munmap_fn)dlsym(RTLD_NEXT, "munmap");
}

/* Before dlsym answers (it may itself mmap), go to the kernel directly. */
static void *sys_mmap(void *a, size_t l, int p, int f, int fd, off_t o) {
    if (real_mmap)
        return real_mmap(a, l, p, f, fd, o);
    return (void *)syscall(SYS_mmap, a, l, p, f, fd, o);
}

/* ---- the table ------------------------------------------------------------- */
/* A window: one file, one writable descriptor for its ioctls, shared by the
 * entries (emulated VMAs) that map parts of it. */
#define MAX_WINS 1024
#define MAX_ENTRIES 4096
struct win { int fd; int nref; };
/* An entry is one emulated 2.6 VMA: [addr, addr+len) shows window bytes from
 * winoff; prot is its mprotect(2) protection; manyprots once a MAP_CHGPROT remap
 * gave some of its pages their own protection (VM_MANYPROTS of the RFP-prot patch). */
struct entry { uintptr_t addr; size_t len; uint64_t winoff; int win; int prot; int manyprots; };

static struct win wins[MAX_WINS];
static struct entry ents[MAX_ENTRIES];
static int nents;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* Mount detection, cached per st_dev: is this FUSE filesystem a shmfs? */
#define MAX_DEVS 32
struct devinfo { dev_t dev; int is_shmfs; char root[256]; };
static struct devinfo devs[MAX_DEVS];
static int ndevs;

static int debug_on = -1;
static void dbg(const char *msg) {
    if (debug_on < 0)
        debug_on = getenv("SHMFS_RFP_DEBUG") != NULL;
    if (debug_on) {
        (void)!write(2, "shmfs_rfp: ", 11);
        (void)!write(2, msg, strlen(msg));
        (void)!write(2, "\n", 1);
    }
}

static void atfork_prepare(void) { pthread_mutex_lock(&lock); }
static void atfork_parent(void) { pthread_mutex_unlock(&lock); }
static void atfork_child(void) { pthread_mutex_unlock(&lock); }

__attribute__((constructor)) static void init(void) {
    resolve();
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* Read /proc/self/mountinfo (no stdio, no malloc) and find the line of dev. */
static void lookup_dev(dev_t dev, struct devinfo *di) {
    static char buf[1 << 16];  /* under lock */
    char want[32];
    di->dev = dev;
    di->is_shmfs = 0;
    di->root[0] = 0;
    int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    snprintf(want, sizeof want, "%u:%u", major(dev), minor(dev));
    size_t have = 0;
    for (;;) {
        ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = 0;
        char *line = buf, *nl;
        while ((nl = strchr(line, '\n')) != NULL) {
            *nl = 0;
            /* id parent maj:min root mountpoint opts ... - fstype source superopts */
            char *f[5] = {0};
            char *p = line;
            for (int i = 0; i < 5 && p; i++) {
                f[i] = p;
                p = strchr(p, ' ');
                if (p)
                    *p++ = 0;
            }
            char *sep = p ? strstr(p, " - ") : NULL;
            if (f[4] && sep && strcmp(f[2], want) == 0) {
                char *fstype = sep + 3;
                char *sp = strchr(fstype, ' ');
                if (sp)
                    *sp = 0;
                if (strcmp(fstype, "fuse.shmfs") == 0 && strlen(f[4]) < sizeof di->root) {
                    di->is_shmfs = 1;
                    strcpy(di->root, f[4]);  /* octal escapes (\040) are left as is */
                }
                close(fd);
                return;
            }
            line = nl + 1;
        }
        have = strlen(line);
        memmove(buf, line, have);
    }
    close(fd);
}

static struct devinfo *devinfo_of(dev_t dev) {
    for (int i = 0; i < ndevs; i++)
        if (devs[i].dev == dev)
            return &devs[i];
    struct devinfo *di = &devs[ndevs < MAX_DEVS ? ndevs++ : (int)(dev % MAX_DEVS)];
    lookup_dev(dev, di);
    return di;
}

static int new_win_slot(void) {
    for (int i = 0; i < MAX_WINS; i++)
        if (wins[i].nref == 0)
            return i;
    return -1;
}

static void put_win(int w) {
    if (--wins[w].nref == 0) {
        close(wins[w].fd);  /* the window goes when its mappings go too */
        wins[w].fd = -1;
    }
}

/* Called with the lock held: hold window w's descriptor across an ioctl made
   without the lock (a concurrent munmap must not close it under us). */
static int pin_win_unlock(int w) {
    int fd = wins[w].fd;
    wins[w].nref++;
    pthread_mutex_unlock(&lock);
    return fd;
}

/* The pinned call is done: drop the hold, keeping the call's errno. */
static void unpin_win(int w) {
    int saved = errno;
    pthread_mutex_lock(&lock);
    put_win(w);
    pthread_mutex_unlock(&lock);
    errno = saved;
}

static int add_entry(uintptr_t addr, size_t len, uint64_t winoff, int w, int prot, int many) {
    if (nents >= MAX_ENTRIES)
        return -1;
    ents[nents++] = (struct entry){addr, len, winoff, w, prot, many};
    wins[w].nref++;
    return 0;
}

static void del_entry(int i) {
    int w = ents[i].win;
    ents[i] = ents[--nents];
    put_win(w);
}

static int find_entry(uintptr_t a) {
    for (int i = 0; i < nents; i++)
        if (a >= ents[i].addr && a < ents[i].addr + ents[i].len)
            return i;
    return -1;
}

/* Split entry i at address a (inside it, page aligned) so an entry starts at a.
 * Returns 0, or -1 when the table is full (the caller then drops the entries). */
static int split_at(uintptr_t a) {
    int i = find_entry(a);
    if (i < 0 || ents[i].addr == a)
        return 0;
    struct entry e = ents[i];
    size_t head = a - e.addr;
    if (add_entry(a, e.len - head, e.winoff + head, e.win, e.prot, e.manyprots) < 0)
        return -1;
    ents[i].len = head;
    return 0;
}

/* The range [a, a+len) stopped being ours (munmap, MAP_FIXED over it, mremap). */
static void forget_range(uintptr_t a, size_t len) {
    uintptr_t end = a + ((len + PG - 1) & PGMASK);
    if (split_at(a) < 0 || split_at(end) < 0) {
        for (int i = nents - 1; i >= 0; i--)  /* table full: drop every overlap whole */
            if (ents[i].addr < end && ents[i].addr + ents[i].len > a)
                del_entry(i);
        return;
    }
    for (int i = nents - 1; i >= 0; i--)
        if (ents[i].addr >= a && ents[i].addr + ents[i].len <= end)
            del_entry(i);
}

/* ---- window creation ---------------------------------------------------------- */
static int create_window_file(int objfd, const struct devinfo *di) {
    char path[4200], dir[4200];
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", objfd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    const char *dirs[2] = {NULL, di->root};
    if (n > 0) {
        path[n] = 0;
        char *slash = strrchr(path, '/');
        if (slash && !strstr(path, " (deleted)")) {
            size_t dl = (size_t)(slash - path);
            memcpy(dir, path, dl);
            dir[dl ? dl : 1] = 0;
            if (!dl)
                dir[0] = '/';
            dirs[0] = dir;
        }
    }
    for (int i = 0; i < 2; i++) {
        if (!dirs[i] || !dirs[i][0])
            continue;
        int fd = open(dirs[i], O_TMPFILE | O_RDWR | O_CLOEXEC | O_EXCL, 0600);
        if (fd >= 0)
            return fd;
    }
    static unsigned counter;  /* under lock */
    for (int i = 0; i < 2; i++) {
        if (!dirs[i] || !dirs[i][0])
            continue;
        char name[4400];
        snprintf(name, sizeof name, "%s/.shmfs-rfp-%d-%u", dirs[i], (int)getpid(), counter++);
        int fd = open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd >= 0) {
            unlink(name);
            return fd;
        }
    }
    return -1;
}

/* Replace the fresh mapping [m, m+len) of objfd at offset off by a window mapping.
 * Returns 0 when done; -1 leaves the original mapping (pass-through). */
static int windowize(void *m, size_t len, int prot, int flags, int objfd, off_t off) {
    struct stat st;
    struct statfs sfs;
    if (fstatfs(objfd, &sfs) < 0 || (unsigned long)sfs.f_type != FUSE_SUPER_MAGIC)
        return -1;
    if (fstat(objfd, &st) < 0 || !S_ISREG(st.st_mode))
        return -1;
    int acc = fcntl(objfd, F_GETFL);
    if (acc < 0)
        return -1;
    acc &= O_ACCMODE;
    int wprot = acc == O_RDWR ? PROT_RW : PROT_READ;  /* VM_MAYWRITE as do_mmap sets it */
    pthread_mutex_lock(&lock);
    int rc = -1, wfd = -1, mfd = -1;
    struct devinfo *di = devinfo_of(st.st_dev);
    int slot = new_win_slot();
    if (!di->is_shmfs || slot < 0 || nents >= MAX_ENTRIES)
        goto out;
    struct shmfs_win_grant g = {.prot = (uint32_t)wprot};
    if (ioctl(objfd, SHMFS_IOC_WIN_GRANT, &g) < 0) {
        dbg("GRANT refused: plain mapping");
        goto out;
    }
    wfd = create_window_file(objfd, di);
    if (wfd < 0) {
        dbg("no place for a window file: plain mapping");
        goto out;
    }
    int high = fcntl(wfd, F_DUPFD_CLOEXEC, 256);  /* out of the way of dup2(x, 3..) */
    if (high >= 0) {
        close(wfd);
        wfd = high;
    }
    size_t wlen = (len + PG - 1) & PGMASK;
    struct shmfs_win_attach at = {.size = wlen, .pgoff = (uint64_t)off / PG,
                                  .prot = (uint32_t)wprot};
    memcpy(at.token, g.token, sizeof at.token);
    if (ioctl(wfd, SHMFS_IOC_WIN_ATTACH, &at) < 0) {
        dbg("ATTACH refused: plain mapping");
        goto out;
    }
    struct stat wst;  /* ATTACH invalidated the size the kernel cached: fetch it */
    if (fstat(wfd, &wst) < 0 || (uint64_t)wst.st_size != wlen)
        goto out;
    /* Map through a descriptor with the program's access mode, so mprotect(2) to
     * PROT_WRITE of a read-only descriptor's mapping stays EACCES. */
    if (acc == O_RDWR) {
        mfd = wfd;
    } else {
        char p[64];
        snprintf(p, sizeof p, "/proc/self/fd/%d", wfd);
        mfd = open(p, O_RDONLY | O_CLOEXEC);
        if (mfd < 0)
            goto out;
    }
    int wflags = (flags & ~(MAP_FIXED_NOREPLACE | MAP_FIXED)) | MAP_FIXED;
    void *w = sys_mmap(m, len, prot, wflags, mfd, 0);
    if (w == MAP_FAILED || w != m) {
        /* A failed MAP_FIXED may have unmapped the range already: map the file back. */
        dbg("window mmap failed: plain mapping");
        sys_mmap(m, len, prot, wflags, objfd, off);
        goto out;
    }
    /* No readaround: a fault reads (and, on a hole, allocates, as a shared read fault
     * does) its own page only, as on tmpfs; readaround over a nonlinear window would
     * read unrelated object pages anyway.  The program's own madvise still applies. */
    if (real_madvise)
        real_madvise(m, len, MADV_RANDOM);
    wins[slot].fd = wfd;
    wins[slot].nref = 0;
    forget_range((uintptr_t)m, len);
    add_entry((uintptr_t)m, wlen, 0, slot, prot, 0);
    rc = 0;
out:
    pthread_mutex_unlock(&lock);
    if (mfd >= 0 && mfd != wfd)  /* the read-only descriptor: the mapping holds the file */
        close(mfd);
    if (rc < 0 && wfd >= 0)
        close(wfd);
    return rc;
}

static void *do_mmap(mmap_fn fn, void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    resolve();
    int saved = errno;
    int shared = (flags & MAP_TYPE) == MAP_SHARED || (flags & MAP_TYPE) == MAP_SHARED_VALIDATE;
    int candidate = shared && !(flags & MAP_ANONYMOUS) && fd >= 0;
    struct statfs sfs;
    int fuse = candidate && fstatfs(fd, &sfs) == 0 && (unsigned long)sfs.f_type == FUSE_SUPER_MAGIC;
    /* On FUSE, map without prefaulting first: the window mapping that replaces this
     * one gets MAP_POPULATE / MAP_LOCKED, and the file's pages are not read twice. */
    int first = fuse ? flags & ~(MAP_POPULATE | MAP_LOCKED) : flags;
    errno = saved;
    void *m = fn ? fn(addr, len, prot, first, fd, off)
                 : (void *)syscall(SYS_mmap, addr, len, prot, first, fd, off);
    if (m == MAP_FAILED)
        return m;
    saved = errno;
    if (!fuse || windowize(m, len, prot, flags, fd, off) < 0) {
        if (first != flags)  /* not a window after all: the mapping the program asked for */
            m = fn ? fn(m, len, prot, (flags & ~MAP_FIXED_NOREPLACE) | MAP_FIXED, fd, off)
                   : (void *)syscall(SYS_mmap, m, len, prot,
                                     (flags & ~MAP_FIXED_NOREPLACE) | MAP_FIXED, fd, off);
        if (m == MAP_FAILED)
            return m;
        if (flags & MAP_FIXED) {  /* it replaced whatever was there */
            pthread_mutex_lock(&lock);
            forget_range((uintptr_t)m, len);
            pthread_mutex_unlock(&lock);
        }
    }
    errno = saved;
    return m;
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    return do_mmap(real_mmap, addr, len, prot, flags, fd, off);
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    return do_mmap(real_mmap64, addr, len, prot, flags, fd, off);
}

int munmap(void *addr, size_t len) {
    resolve();
    int r = real_munmap(addr, len);
    if (r == 0) {
        int saved = errno;
        pthread_mutex_lock(&lock);
        forget_range((uintptr_t)addr, len);
        pthread_mutex_unlock(&lock);
        errno = saved;
    }
    return r;
}

void *mremap(void *old, size_t oldlen, size_t newlen, int flags, ...) {
    resolve();
    void *want = NULL;
    if (flags & MREMAP_FIXED) {
        va_list ap;
        va_start(ap, flags);
        want = va_arg(ap, void *);
        va_end(ap);
    }
    void *r = real_mremap(old, oldlen, newlen, flags, want);
    if (r == MAP_FAILED)
        return r;
    int saved = errno;
    pthread_mutex_lock(&lock);
    int i = find_entry((uintptr_t)old);
    struct entry e = i >= 0 ? ents[i] : (struct entry){0};
    int whole = i >= 0 && e.addr == (uintptr_t)old && e.len == ((oldlen + PG - 1) & PGMASK);
    if (whole && !(flags & MREMAP_DONTUNMAP)) {  /* the emulated VMA moves or resizes */
        ents[i].addr = (uintptr_t)r;
        ents[i].len = (newlen + PG - 1) & PGMASK;
    } else if (i >= 0) {  /* part of one: no longer tracked (documented) */
        forget_range((uintptr_t)old, oldlen);
    }
    pthread_mutex_unlock(&lock);
    errno = saved;
    return r;
}

/* Write back the kernel's dirty pages of window bytes [off, off+len) before the
 * daemon changes what they show: otherwise a store made before a remap would be
 * written back later into the page the window shows after it. */
static void flush_range(int fd, uint64_t off, uint64_t len) {
    sync_file_range(fd, (off64_t)off, (off64_t)len,
                    SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                        SYNC_FILE_RANGE_WAIT_AFTER);
}

/* The one place a remap reaches the daemon: switch to SHMFS_IOC_WIN_REMAPV (nr 10,
 * a vector of remaps) here once it exists. */
static int win_remap(int fd, uint64_t start, uint64_t size, uint64_t pgoff, uint32_t prot,
                     uint32_t flags) {
    struct shmfs_win_remap r = {start, size, pgoff, prot, flags};
    return ioctl(fd, SHMFS_IOC_WIN_REMAP, &r);
}

static int prot_known(int prot) {
    return (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC)) == 0;
}

static int rfp_window(uintptr_t a, size_t size, int prot, size_t pgoff, int flags,
                      struct entry e, int fd);

int remap_file_pages(void *addr, size_t size, int prot, size_t pgoff, int flags) {
    resolve();
    uintptr_t a = (uintptr_t)addr;
    pthread_mutex_lock(&lock);
    int i = find_entry(a & PGMASK);
    if (i < 0) {
        pthread_mutex_unlock(&lock);
        return real_rfp(addr, size, prot, pgoff, flags);
    }
    struct entry e = ents[i];
    int fd = pin_win_unlock(e.win);
    int r = rfp_window(a, size, prot, pgoff, flags, e, fd);
    unpin_win(e.win);
    return r;
}

static int rfp_window(uintptr_t a, size_t size, int prot, size_t pgoff, int flags,
                      struct entry e, int fd) {
    /* 2.6.23 section 2.1, first failing row wins: 1 prot, 2-3 rounding/size; 6-10
     * from the entry (the emulated VMA; the unrounded end as 2.6.23 used it); the
     * daemon checks them again against the whole window, and row 5. */
    int chg = flags & MAP_CHGPROT;
    if ((prot && !chg) || (chg && !prot_known(prot))) {
        errno = EINVAL;
        return -1;
    }
    uintptr_t s = a & PGMASK;
    size_t sz = size & PGMASK;
    if (s + sz <= s || a + size > e.addr + e.len) {
        errno = EINVAL;
        return -1;
    }
    uint64_t off = e.winoff + (a - e.addr);
    uint32_t wflags = (uint32_t)(flags & (MAP_NONBLOCK | MAP_CHGPROT));  /* others ignored */
    if (!(flags & MAP_NONBLOCK))
        wflags |= SHMFS_REMAP_POPULATE;  /* 2.6.23 populates unless MAP_NONBLOCK */
    int wprot = chg ? (prot & ~PROT_EXEC) : 0;
    if (chg && (prot & PROT_WRITE) && !(prot & PROT_READ)) {  /* x86: write implies read */
        wprot |= PROT_READ;
    }
    flush_range(fd, e.winoff + (s - e.addr), sz);
    if (win_remap(fd, off, size, pgoff, (uint32_t)wprot, wflags) < 0)
        return -1;
    /* Protections in the process itself: FUSE cannot refuse a store at fault time, so
     * pages with their own protection get it from mprotect(2) here (one VMA per run of
     * equal protection, as mprotect of a 2.6 nonlinear VMA split it, row 21). */
    if (chg) {
        if (real_mprotect((void *)s, sz, prot) < 0)
            return -1;
        pthread_mutex_lock(&lock);
        int j = find_entry(s);
        if (j >= 0)
            ents[j].manyprots = 1;
        pthread_mutex_unlock(&lock);
    } else if (e.manyprots) {  /* a plain remap gives the pages the VMA's protection */
        if (real_mprotect((void *)s, sz, e.prot) < 0)
            return -1;
    }
    return 0;
}

int mprotect(void *addr, size_t len, int prot) {
    resolve();
    int r = real_mprotect(addr, len, prot);
    if (r < 0)
        return r;
    int saved = errno;
    uintptr_t a = (uintptr_t)addr, end = a + ((len + PG - 1) & PGMASK);
    pthread_mutex_lock(&lock);
    if (nents) {
        if (split_at(a) == 0 && split_at(end) == 0) {  /* the VMA splits, as in 2.6 (row 20) */
            for (int i = 0; i < nents; i++) {
                struct entry *e = &ents[i];
                if (e->addr >= a && e->addr + e->len <= end) {
                    if (e->manyprots) {  /* pages with their own protection get this one */
                        struct shmfs_win_mprotect mp = {e->winoff, e->len,
                                                        (uint32_t)(prot & PROT_RW), 0};
                        if (mp.prot == PROT_WRITE)
                            mp.prot = PROT_RW;
                        ioctl(wins[e->win].fd, SHMFS_IOC_WIN_MPROTECT, &mp);
                        e->manyprots = 0;
                    }
                    e->prot = prot;
                }
            }
        }
    }
    pthread_mutex_unlock(&lock);
    errno = saved;
    return 0;
}

static int remove_window(uintptr_t a, size_t len, int advice, struct entry e, int fd);

int madvise(void *addr, size_t len, int advice) {
    resolve();
    uintptr_t a = (uintptr_t)addr;
    if (advice != MADV_REMOVE)
        return real_madvise(addr, len, advice);
    pthread_mutex_lock(&lock);
    int i = find_entry(a);
    if (i < 0) {
        pthread_mutex_unlock(&lock);
        return real_madvise(addr, len, advice);
    }
    struct entry e = ents[i];
    int fd = pin_win_unlock(e.win);
    int r = remove_window(a, len, advice, e, fd);
    unpin_win(e.win);
    return r;
}

static int remove_window(uintptr_t a, size_t len, int advice, struct entry e, int fd) {
    void *addr = (void *)a;
    /* madvise_remove's checks, then the window's MADV_REMOVE: punch the object pages
     * the range shows (a FUSE mapping's own MADV_REMOVE would punch the window file). */
    size_t l = (len + PG - 1) & PGMASK;
    if (a & (PG - 1) || a + l < a) {
        errno = EINVAL;
        return -1;
    }
    if (l == 0)
        return 0;
    if (a + l > e.addr + e.len)  /* spans entries: the kernel decides (real call) */
        return real_madvise(addr, len, advice);
    /* A descriptor not open for writing (VM_MAYWRITE clear): the daemon's EACCES. */
    uint64_t off = e.winoff + (a - e.addr);
    flush_range(fd, off, l);
    struct shmfs_win_madvise mv = {off, l, MADV_REMOVE, 0};
    return ioctl(fd, SHMFS_IOC_WIN_MADVISE, &mv);
}

/* syscall(SYS_remap_file_pages, ...) through glibc's syscall(3) wrapper is caught
 * too; inline `syscall` instructions are not (docs/windows.md). */
long syscall(long nr, ...) {
    va_list ap;
    va_start(ap, nr);
    long a1 = va_arg(ap, long), a2 = va_arg(ap, long), a3 = va_arg(ap, long);
    long a4 = va_arg(ap, long), a5 = va_arg(ap, long), a6 = va_arg(ap, long);
    va_end(ap);
    if (nr == SYS_remap_file_pages)
        return remap_file_pages((void *)a1, (size_t)a2, (int)a3, (size_t)a4, (int)a5);
    if (!real_syscall)
        real_syscall = (syscall_fn)dlsym(RTLD_NEXT, "syscall");
    return real_syscall(nr, a1, a2, a3, a4, a5, a6);
}
