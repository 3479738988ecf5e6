/* Run as an unprivileged user under `shmfs run`: the library reaches only what the
 * program's own descriptors reach.
 *
 *   secure PUBLIC SECRET
 *
 * PUBLIC: 8 tagged pages, mode 0644, not ours; SECRET: mode 0600, not ours.
 * Prints one line of key=result pairs (tests/rfp/test_rfp.py checks each). */
#include "rfp_common.h"

static char *res(int r, char *buf) {
    sprintf(buf, "%d/%s", r, en(r < 0 ? errno : 0));
    return buf;
}

int main(int argc, char **argv) {
    if (argc != 3)
        return 2;
    char b[8][64];
    int sfd = open(argv[2], O_RDONLY);
    int se = errno;
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0)
        return 99;
    char *w = mmap(NULL, 8 * P, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int we = errno;
    char *m = mmap(NULL, 8 * P, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return 98;
    errno = 0;
    int r1 = remap_file_pages(m, P, 0, 7, 0);
    long t0 = tag(m);
    errno = 0;
    int big = remap_file_pages(m + P, P, 0, 1L << 40, 0);  /* far beyond: SIGBUS, no data */
    int sig = touch(m + P, 0);
    errno = 0;
    int mp = mprotect(m, P, PROT_READ | PROT_WRITE);
    strcpy(b[0], res(mp, b[7]));
    errno = 0;
    int cp = remap_file_pages(m + 2 * P, P, PROT_READ | PROT_WRITE, 2, MAP_CHGPROT);
    strcpy(b[1], res(cp, b[7]));
    errno = 0;
    int mr = madvise(m, P, MADV_REMOVE);
    strcpy(b[2], res(mr, b[7]));
    printf("secure open_secret=%d/%s map_write=%s remap=%d tag0=%ld beyond=%d touch=%d "
           "mprotect_write=%s chgprot_write=%s madv_remove=%s\n",
           sfd, en(sfd < 0 ? se : 0), w == MAP_FAILED ? en(we) : "mapped", r1, t0, big, sig,
           b[0], b[1], b[2]);
    return 0;
}
