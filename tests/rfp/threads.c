/* Two threads remapping different pages of one shared mapping, then a fork.
 *
 *   threads FILE ROUNDS
 *
 * FILE gets 64 tagged pages, mapped whole.  Thread t owns window pages [32t, 32t+32)
 * and for ROUNDS rounds points each of them at another pool page, reading every
 * page back after each remap.  Then fork(): the child reads the final layout (the
 * parent's remaps) and remaps one page itself.  Prints:
 *   threads errors=E remaps=N child_saw=OK child_errors=E */
#include "rfp_common.h"

#include <pthread.h>

#define NP 64
static char *m;
static long rounds;
static long final[NP];

static void *worker(void *arg) {
    long t = (long)arg, errs = 0;
    for (long r = 0; r < rounds; r++)
        for (long k = 0; k < NP / 2; k++) {
            long w = t * NP / 2 + k, pg = (w * 13 + r * 7 + t) % NP;
            if (remap_file_pages(m + w * P, P, 0, pg, 0) < 0 || !page_ok(m + w * P, pg))
                errs++;
            final[w] = pg;
        }
    return (void *)errs;
}

int main(int argc, char **argv) {
    if (argc != 3)
        return 2;
    rounds = atol(argv[2]);
    int fd = make_file(argv[1], NP);
    m = mmap(NULL, NP * P, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return 99;
    pthread_t th[2];
    for (long t = 0; t < 2; t++)
        pthread_create(&th[t], NULL, worker, (void *)t);
    long errs = 0;
    for (int t = 0; t < 2; t++) {
        void *r;
        pthread_join(th[t], &r);
        errs += (long)r;
    }
    long lost = 0;
    for (int w = 0; w < NP; w++)
        lost += !page_ok(m + w * P, final[w]);
    fflush(stdout);
    int pfd[2];
    if (pipe(pfd) < 0)
        return 99;
    pid_t pid = fork();
    if (pid == 0) {
        long bad = 0;
        for (int w = 0; w < NP; w++)
            bad += !page_ok(m + w * P, final[w]);
        if (write(pfd[1], &bad, sizeof bad) != sizeof bad)
            _exit(1);
        _exit(0);
    }
    long child_bad = -1;
    if (read(pfd[0], &child_bad, sizeof child_bad) != sizeof child_bad)
        child_bad = -1;
    int st;
    waitpid(pid, &st, 0);
    printf("threads errors=%ld remaps=%ld lost=%ld child_errors=%ld vmas=%d\n", errs,
           rounds * NP, lost, child_bad, vmas_in(m, NP * P));
    return 0;
}
