/*
 * fuse_floor: the cheapest FUSE server this VM can run, to measure what one
 * request costs with no filesystem behind it (issues 12 and 15), plus the C
 * client loops that time it.  Built and driven by scripts/fuse_floor.py;
 * docs/performance.md "The floor of one FUSE request on this VM".
 *
 * No libfuse: it speaks the protocol of <linux/fuse.h> on a /dev/fuse
 * descriptor that the runner opened and mounted (mount(2), as
 * mount/mounting/kernel.py does for shmfs) and passed in with --fd.
 *
 *   fuse_floor serve --fd N [--poll] [--cpu-latency]
 *       Answer requests until the mount goes away (read gives ENODEV); exit 0.
 *       Prints "init" on stdout once FUSE_INIT is answered.
 *       --poll: the descriptor is nonblocking and the reader spins on read(2)
 *       (EAGAIN) instead of sleeping in it.
 *       --cpu-latency: hold /dev/cpu_dma_latency = 0 while serving (the
 *       request shmfs holds while requests stream in, mount/server/cpulatency.py).
 *
 * The filesystem: one flat root directory (mode 1777) of regular files.  A
 * name table (chained hash) maps names to inode numbers; an inode is a size
 * and a mode.  READ returns zero bytes from a static buffer, up to the size;
 * WRITE discards its data and only moves the size; nothing else is stored.
 * INIT grants the flags shmfs grants and uses its timeouts (86400 s) and
 * max_write/max_pages (1 MiB), so the kernel sends the same requests for the
 * same system calls (mount/server/ops.py INIT_WANTED, OpsConfig).
 *
 * IOCTL, on a regular file:
 *   FLOOR_IOC_NOP  (_IO(0xF1, 0))  answered 0: one bare round trip.
 *   FLOOR_IOC_STEP (_IO(0xF1, 1))  a window step stand-in: arg = (tag << 32) |
 *       page.  Before replying, the server writes NOTIFY_INVAL_INODE of that
 *       page and NOTIFY_STORE of one page whose first 8 bytes are arg, so the
 *       next load through a MAP_SHARED mapping is a minor fault that sees arg
 *       (what shmfs's REMAP with SHMFS_REMAP_POPULATE does, docs/windows.md).
 *   FLOOR_IOC_COUNTS (_IOR(0xF1, 2, uint64_t[64])), on any node: how many
 *       requests of each opcode the server has read so far (index = opcode),
 *       so the runner can say how many round trips each system call costs.
 *   anything else: ENOTTY (as shmfs and tmpfs answer TCGETS).
 *
 * Client subcommands (print "ns=<elapsed> ops=<n> bytes=<b>", as
 * scripts/benchlib/helper.c does; the timing covers only the loop):
 *   fuse_floor append PATH BS TOTAL      new file, write(2) BS at a time, close
 *   fuse_floor ioctl PATH CMD N          N ioctl(fd, CMD, 0), any result
 *   fuse_floor step PATH PAGES N         N x (ioctl STEP of a random page, load
 *                                        8 bytes through MAP_SHARED, check)
 *   fuse_floor emul PATH PAGES OBJPAGES N  the kernel's remap_file_pages emulation
 *                                        on the same loop (for a tmpfs): PATH gets
 *                                        OBJPAGES pages, each holding its number
 *                                        (untimed), then N x (mmap MAP_FIXED of one
 *                                        random object page over a random page of a
 *                                        PAGES-page mapping, load 8 bytes, check)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096L
#define FLOOR_IOC_NOP _IO(0xF1, 0)
#define FLOOR_IOC_STEP _IO(0xF1, 1)
#define NCOUNTS 64 /* requests seen, by opcode (0..63; the rest counted in 0) */
#define FLOOR_IOC_COUNTS _IOR(0xF1, 2, uint64_t[NCOUNTS])
#define MAX_WRITE (1 << 20)
#define BUF_SIZE (MAX_WRITE + 65536)
#define TIMEOUT_S 86400 /* shmfs's entry and attribute timeouts (OpsConfig) */
#define NBUCKETS 65536
#define MAX_INODES (1 << 22) /* a bound on the table; CREATE beyond it: ENOSPC */

/* ---- the name table and the inodes ------------------------------------ */

struct name {
	struct name *next;
	uint64_t ino;
	uint32_t hash;
	char s[];
};

struct inode {
	uint64_t size;
	uint32_t mode, nlink, uid, gid;
};

static struct name *buckets[NBUCKETS];
static struct inode *inodes; /* indexed by nodeid; 1 is the root */
static uint64_t ninodes, cap_inodes;
static uint32_t root_uid, root_gid;

static uint32_t hash_name(const char *s)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	while (*s)
		h = (h ^ (unsigned char)*s++) * 16777619u;
	return h;
}

static struct name **find_slot(const char *s, uint32_t h)
{
	struct name **p = &buckets[h % NBUCKETS];
	while (*p && ((*p)->hash != h || strcmp((*p)->s, s)))
		p = &(*p)->next;
	return p;
}

static uint64_t new_inode(uint32_t mode, uint32_t uid, uint32_t gid)
{
	if (ninodes >= MAX_INODES)
		return 0;
	if (ninodes == cap_inodes) {
		cap_inodes = cap_inodes ? cap_inodes * 2 : 1024;
		inodes = realloc(inodes, cap_inodes * sizeof(*inodes));
		if (!inodes) {
			perror("fuse_floor: realloc");
			exit(1);
		}
	}
	inodes[ninodes] = (struct inode){0, mode, 1, uid, gid};
	return ninodes++;
}

static void fill_attr(struct fuse_attr *a, uint64_t ino)
{
	const struct inode *in = &inodes[ino];
	memset(a, 0, sizeof(*a));
	a->ino = ino;
	a->size = in->size;
	a->blocks = (in->size + 511) / 512;
	a->mode = in->mode;
	a->nlink = in->nlink;
	a->uid = in->uid;
	a->gid = in->gid;
	a->blksize = PAGE;
}

static void fill_entry(struct fuse_entry_out *e, uint64_t ino)
{
	memset(e, 0, sizeof(*e));
	e->nodeid = ino;
	e->generation = 1;
	e->entry_valid = TIMEOUT_S;
	e->attr_valid = TIMEOUT_S;
	fill_attr(&e->attr, ino);
}

/* ---- replies ---------------------------------------------------------- */

static int dev = -1;
static char zeros[MAX_WRITE];
static char store_page[PAGE];
static uint64_t counts[NCOUNTS];

static void send_iov(struct iovec *iov, int n)
{
	size_t len = 0;
	for (int i = 0; i < n; i++)
		len += iov[i].iov_len;
	((struct fuse_out_header *)iov[0].iov_base)->len = (uint32_t)len;
	/* ENOENT: the request was interrupted and is gone; nothing to do */
	if (writev(dev, iov, n) < 0 && errno != ENOENT)
		perror("fuse_floor: writev");
}

static void reply(uint64_t unique, int error, const void *body, size_t len)
{
	struct fuse_out_header oh = {0, error, unique};
	struct iovec iov[2] = {{&oh, sizeof(oh)}, {(void *)body, len}};
	send_iov(iov, len ? 2 : 1);
}

static void notify(int code, const void *body, size_t len, const void *data, size_t dlen)
{
	struct fuse_out_header oh = {0, code, 0};
	struct iovec iov[3] = {{&oh, sizeof(oh)}, {(void *)body, len}, {(void *)data, dlen}};
	send_iov(iov, dlen ? 3 : 2);
}

/* ---- handlers ----------------------------------------------------------- */

static const uint64_t init_wanted =
	FUSE_ASYNC_READ | FUSE_ATOMIC_O_TRUNC | FUSE_BIG_WRITES | FUSE_DO_READDIRPLUS |
	FUSE_READDIRPLUS_AUTO | FUSE_PARALLEL_DIROPS | FUSE_MAX_PAGES | FUSE_HAS_IOCTL_DIR |
	FUSE_HANDLE_KILLPRIV_V2 | FUSE_POSIX_ACL | FUSE_DONT_MASK | FUSE_SETXATTR_EXT |
	FUSE_EXPORT_SUPPORT | FUSE_CACHE_SYMLINKS;

static void do_init(struct fuse_in_header *h, const void *arg)
{
	const struct fuse_init_in *in = arg;
	struct fuse_init_out out = {0};
	out.major = FUSE_KERNEL_VERSION;
	out.minor = in->minor < FUSE_KERNEL_MINOR_VERSION ? in->minor : FUSE_KERNEL_MINOR_VERSION;
	out.max_readahead = in->max_readahead < MAX_WRITE ? in->max_readahead : MAX_WRITE;
	out.flags = in->flags & init_wanted;
	out.max_background = 64;
	out.congestion_threshold = 48;
	out.max_write = MAX_WRITE;
	out.time_gran = 1;
	out.max_pages = MAX_WRITE / PAGE;
	reply(h->unique, 0, &out, sizeof(out));
}

static void do_lookup(struct fuse_in_header *h, const char *name)
{
	struct name *n = h->nodeid == FUSE_ROOT_ID ? *find_slot(name, hash_name(name)) : NULL;
	if (!n) {
		reply(h->unique, -ENOENT, NULL, 0);
		return;
	}
	struct fuse_entry_out e;
	fill_entry(&e, n->ino);
	reply(h->unique, 0, &e, sizeof(e));
}

static int valid_node(uint64_t ino)
{
	return ino >= 1 && ino < ninodes;
}

static void reply_attr(uint64_t unique, uint64_t ino)
{
	struct fuse_attr_out out = {0};
	out.attr_valid = TIMEOUT_S;
	fill_attr(&out.attr, ino);
	reply(unique, 0, &out, sizeof(out));
}

static void do_setattr(struct fuse_in_header *h, const struct fuse_setattr_in *in)
{
	struct inode *i = &inodes[h->nodeid];
	if (in->valid & FATTR_SIZE) {
		if ((i->mode & S_IFMT) != S_IFREG) {
			reply(h->unique, -EISDIR, NULL, 0);
			return;
		}
		i->size = in->size;
	}
	if (in->valid & FATTR_MODE)
		i->mode = (i->mode & S_IFMT) | (in->mode & 07777);
	if (in->valid & FATTR_UID)
		i->uid = in->uid;
	if (in->valid & FATTR_GID)
		i->gid = in->gid;
	reply_attr(h->unique, h->nodeid);
}

static void do_create(struct fuse_in_header *h, const struct fuse_create_in *in)
{
	const char *name = (const char *)(in + 1);
	uint32_t hash = hash_name(name);
	struct name **slot = find_slot(name, hash);
	size_t len = strlen(name);
	if (h->nodeid != FUSE_ROOT_ID) {
		reply(h->unique, -ENOTDIR, NULL, 0);
		return;
	}
	if (*slot) {
		reply(h->unique, -EEXIST, NULL, 0);
		return;
	}
	if (len > 255) {
		reply(h->unique, -ENAMETOOLONG, NULL, 0);
		return;
	}
	if (!S_ISREG(in->mode)) {
		reply(h->unique, -EPERM, NULL, 0);
		return;
	}
	uint64_t ino = new_inode(S_IFREG | (in->mode & ~in->umask & 07777), h->uid, h->gid);
	struct name *n = ino ? malloc(sizeof(*n) + len + 1) : NULL;
	if (!n) {
		reply(h->unique, -ENOSPC, NULL, 0);
		return;
	}
	n->next = NULL;
	n->ino = ino;
	n->hash = hash;
	memcpy(n->s, name, len + 1);
	*slot = n;
	struct {
		struct fuse_entry_out e;
		struct fuse_open_out o;
	} out;
	fill_entry(&out.e, ino);
	memset(&out.o, 0, sizeof(out.o));
	out.o.fh = ino;
	out.o.open_flags = FOPEN_KEEP_CACHE | FOPEN_NOFLUSH;
	reply(h->unique, 0, &out, sizeof(out));
}

static void do_unlink(struct fuse_in_header *h, const char *name)
{
	struct name **slot = h->nodeid == FUSE_ROOT_ID ? find_slot(name, hash_name(name)) : NULL;
	if (!slot || !*slot) {
		reply(h->unique, -ENOENT, NULL, 0);
		return;
	}
	struct name *n = *slot;
	*slot = n->next;
	inodes[n->ino].nlink = 0; /* the record stays: open fds may still use it */
	free(n);
	reply(h->unique, 0, NULL, 0);
}

static void do_open(struct fuse_in_header *h, int dir)
{
	struct fuse_open_out out = {0};
	out.fh = h->nodeid;
	out.open_flags = dir ? 0 : FOPEN_KEEP_CACHE | FOPEN_NOFLUSH;
	reply(h->unique, 0, &out, sizeof(out));
}

static void do_read(struct fuse_in_header *h, const struct fuse_read_in *in)
{
	uint64_t size = inodes[h->nodeid].size, n = 0;
	if (in->offset < size)
		n = size - in->offset < in->size ? size - in->offset : in->size;
	if (n > sizeof(zeros))
		n = sizeof(zeros);
	reply(h->unique, 0, zeros, n);
}

static void do_write(struct fuse_in_header *h, const struct fuse_write_in *in)
{
	struct inode *i = &inodes[h->nodeid];
	struct fuse_write_out out = {in->size, 0};
	if (in->offset + in->size > i->size)
		i->size = in->offset + in->size;
	reply(h->unique, 0, &out, sizeof(out));
}

static void do_ioctl(struct fuse_in_header *h, const struct fuse_ioctl_in *in)
{
	struct fuse_ioctl_out out = {0};
	if (in->cmd == FLOOR_IOC_COUNTS) {
		struct fuse_out_header oh = {0, 0, h->unique};
		struct iovec iov[3] = {{&oh, sizeof(oh)}, {&out, sizeof(out)},
				       {counts, sizeof(counts)}};
		if (in->out_size < sizeof(counts)) {
			reply(h->unique, -EINVAL, NULL, 0);
			return;
		}
		send_iov(iov, 3);
		return;
	}
	if ((inodes[h->nodeid].mode & S_IFMT) != S_IFREG ||
	    (in->cmd != FLOOR_IOC_NOP && in->cmd != FLOOR_IOC_STEP)) {
		reply(h->unique, -ENOTTY, NULL, 0);
		return;
	}
	if (in->cmd == FLOOR_IOC_STEP) {
		uint64_t page = in->arg & 0xFFFFFFFFu;
		if ((page + 1) * PAGE > inodes[h->nodeid].size) {
			reply(h->unique, -EINVAL, NULL, 0);
			return;
		}
		struct fuse_notify_inval_inode_out inv = {h->nodeid, (int64_t)(page * PAGE), PAGE};
		notify(FUSE_NOTIFY_INVAL_INODE, &inv, sizeof(inv), NULL, 0);
		struct fuse_notify_store_out st = {h->nodeid, page * PAGE, PAGE, 0};
		memcpy(store_page, &in->arg, sizeof(in->arg));
		notify(FUSE_NOTIFY_STORE, &st, sizeof(st), store_page, PAGE);
	}
	reply(h->unique, 0, &out, sizeof(out));
}

static void dispatch(char *buf, ssize_t len)
{
	struct fuse_in_header *h = (struct fuse_in_header *)buf;
	void *arg = h + 1;
	if (len < (ssize_t)sizeof(*h) || h->len != (uint32_t)len)
		return;
	buf[len] = 0; /* names end inside the request; a guard for a malformed one */
	counts[h->opcode < NCOUNTS ? h->opcode : 0]++;
	switch (h->opcode) {
	case FUSE_FORGET:
	case FUSE_BATCH_FORGET:
	case FUSE_INTERRUPT:
		return; /* no reply */
	case FUSE_INIT:
		do_init(h, arg);
		printf("init\n");
		fflush(stdout);
		return;
	case FUSE_DESTROY:
		reply(h->unique, 0, NULL, 0);
		return;
	}
	if (!valid_node(h->nodeid)) {
		reply(h->unique, -ESTALE, NULL, 0);
		return;
	}
	int isreg = S_ISREG(inodes[h->nodeid].mode);
	switch (h->opcode) {
	case FUSE_LOOKUP:
		do_lookup(h, arg);
		break;
	case FUSE_GETATTR:
		reply_attr(h->unique, h->nodeid);
		break;
	case FUSE_SETATTR:
		do_setattr(h, arg);
		break;
	case FUSE_CREATE:
		do_create(h, arg);
		break;
	case FUSE_UNLINK:
		do_unlink(h, arg);
		break;
	case FUSE_OPEN:
		do_open(h, 0);
		break;
	case FUSE_OPENDIR:
		do_open(h, 1);
		break;
	case FUSE_READ:
		if (isreg)
			do_read(h, arg);
		else
			reply(h->unique, -EISDIR, NULL, 0);
		break;
	case FUSE_WRITE:
		if (isreg)
			do_write(h, arg);
		else
			reply(h->unique, -EISDIR, NULL, 0);
		break;
	case FUSE_IOCTL:
		do_ioctl(h, arg);
		break;
	case FUSE_READDIR:
	case FUSE_READDIRPLUS: /* an empty listing: the runs never list */
	case FUSE_FLUSH:
	case FUSE_RELEASE:
	case FUSE_RELEASEDIR:
	case FUSE_FSYNC:
	case FUSE_FSYNCDIR:
		reply(h->unique, 0, NULL, 0);
		break;
	case FUSE_GETXATTR:
		reply(h->unique, -ENODATA, NULL, 0);
		break;
	default:
		reply(h->unique, -ENOSYS, NULL, 0);
	}
}

static int serve(int fd, int poll_mode, int cpu_latency)
{
	static char buf[BUF_SIZE + 1];
	dev = fd;
	if (cpu_latency) {
		int q = open("/dev/cpu_dma_latency", O_WRONLY | O_CLOEXEC);
		int32_t zero = 0;
		if (q < 0 || write(q, &zero, sizeof(zero)) != sizeof(zero)) {
			perror("fuse_floor: /dev/cpu_dma_latency");
			return 1;
		}
		/* held until exit: the kernel drops it when the file closes */
	}
	if (poll_mode && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
		perror("fuse_floor: O_NONBLOCK");
		return 1;
	}
	new_inode(0, 0, 0); /* nodeid 0 is never used */
	new_inode(S_IFDIR | 01777, root_uid, root_gid);
	inodes[FUSE_ROOT_ID].nlink = 2;
	for (;;) {
		ssize_t n = read(fd, buf, BUF_SIZE);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR || errno == ENOENT)
				continue; /* spin (poll mode) / interrupted / request gone */
			if (errno == ENODEV)
				return 0; /* unmounted */
			perror("fuse_floor: read /dev/fuse");
			return 1;
		}
		dispatch(buf, n);
	}
}

/* ---- client loops ----------------------------------------------------- */

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what, const char *path)
{
	fprintf(stderr, "fuse_floor: %s %s: %s\n", what, path, strerror(errno));
	exit(1);
}

static void report(long long ns, long long ops, long long bytes)
{
	printf("ns=%lld ops=%lld bytes=%lld\n", ns, ops, bytes);
}

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 2685821657736338717ULL;
}

static int append(const char *path, long bs, long long total)
{
	char *buf;
	if (posix_memalign((void **)&buf, PAGE, bs))
		die("posix_memalign", path);
	memset(buf, 0x5a, bs);
	long long t0 = now_ns(), done = 0, ops = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die("open", path);
	for (; done < total; done += bs, ops++)
		if (write(fd, buf, bs) != bs)
			die("write", path);
	if (close(fd))
		die("close", path);
	report(now_ns() - t0, ops, done);
	return 0;
}

static int ioctl_loop(const char *path, unsigned long cmd, long long n)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		die("open", path);
	long long t0 = now_ns();
	for (long long i = 0; i < n; i++)
		ioctl(fd, cmd, 0); /* the result is whatever the filesystem answers */
	report(now_ns() - t0, n, 0);
	close(fd);
	return 0;
}

static int step_loop(const char *path, long long pages, long long n)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		die("open", path);
	volatile char *base = mmap(NULL, pages * PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		die("mmap", path);
	long long errors = 0, t0 = now_ns();
	for (long long i = 0; i < n; i++) {
		uint64_t page = rnd() % pages, arg = ((uint64_t)(i + 1) << 32) | page;
		if (ioctl(fd, FLOOR_IOC_STEP, arg))
			die("ioctl STEP", path);
		if (*(volatile uint64_t *)(base + page * PAGE) != arg)
			errors++;
	}
	long long ns = now_ns() - t0;
	munmap((void *)base, pages * PAGE);
	close(fd);
	report(ns, n, 0);
	if (errors)
		fprintf(stderr, "fuse_floor: %lld of %lld loads did not see the stored page\n",
			errors, n);
	return errors ? 1 : 0;
}

static int emul_loop(const char *path, long long pages, long long objpages, long long n)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		die("open", path);
	for (long long p = 0; p < objpages; p++) {
		uint64_t v = p;
		if (pwrite(fd, &v, sizeof(v), p * PAGE) != sizeof(v))
			die("pwrite", path);
	}
	if (ftruncate(fd, objpages * PAGE))
		die("ftruncate", path);
	char *base = mmap(NULL, pages * PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		die("mmap", path);
	long long errors = 0, t0 = now_ns();
	for (long long i = 0; i < n; i++) {
		uint64_t page = rnd() % pages, p = rnd() % objpages;
		if (mmap(base + page * PAGE, PAGE, PROT_READ, MAP_SHARED | MAP_FIXED, fd,
			 p * PAGE) == MAP_FAILED)
			die("mmap MAP_FIXED", path);
		if (*(volatile uint64_t *)(base + page * PAGE) != p)
			errors++;
	}
	long long ns = now_ns() - t0;
	munmap(base, pages * PAGE);
	close(fd);
	report(ns, n, 0);
	if (errors)
		fprintf(stderr, "fuse_floor: %lld of %lld loads saw the wrong page\n", errors, n);
	return errors ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "serve")) {
		int fd = -1, poll_mode = 0, cpu_latency = 0;
		for (int i = 2; i < argc; i++) {
			if (!strcmp(argv[i], "--fd") && i + 1 < argc)
				fd = atoi(argv[++i]);
			else if (!strcmp(argv[i], "--poll"))
				poll_mode = 1;
			else if (!strcmp(argv[i], "--cpu-latency"))
				cpu_latency = 1;
			else
				fd = -2;
		}
		if (fd < 0) {
			fprintf(stderr, "usage: fuse_floor serve --fd N [--poll] [--cpu-latency]\n");
			return 2;
		}
		root_uid = getuid();
		root_gid = getgid();
		return serve(fd, poll_mode, cpu_latency);
	}
	if (argc == 5 && !strcmp(argv[1], "append"))
		return append(argv[2], atol(argv[3]), atoll(argv[4]));
	if (argc == 5 && !strcmp(argv[1], "ioctl"))
		return ioctl_loop(argv[2], strtoul(argv[3], NULL, 0), atoll(argv[4]));
	if (argc == 5 && !strcmp(argv[1], "step"))
		return step_loop(argv[2], atoll(argv[3]), atoll(argv[4]));
	if (argc == 6 && !strcmp(argv[1], "emul"))
		return emul_loop(argv[2], atoll(argv[3]), atoll(argv[4]), atoll(argv[5]));
	fprintf(stderr, "usage: fuse_floor serve|append|ioctl|step|emul ...\n");
	return 2;
}
