/*
 * A runtime wrapper for bench/cri.sh: runs REAL (a -D at build time) with this process's
 * arguments, then appends "START_NS END_NS STATUS ARGS..." (CLOCK_REALTIME nanoseconds) to
 * LOG (also a -D), and exits with REAL's status. containerd's runc shim calls it as it would
 * call the runtime (BinaryName), so the bench can tell the runtime's own time in a pod's
 * lifecycle from containerd's, the shim's and CNI's. posix_spawn keeps its own cost small.
 */
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv) {
    (void)argc;
    argv[0] = REAL;
    long long start = now_ns();
    pid_t pid;
    int err = posix_spawn(&pid, REAL, NULL, NULL, argv, environ);
    if (err != 0) {
        perror("timed-exec: posix_spawn " REAL);
        return 127;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            perror("timed-exec: waitpid");
            return 127;
        }
    }
    long long end = now_ns();
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    FILE *log = fopen(LOG, "a");
    if (log != NULL) {
        fprintf(log, "%lld %lld %d", start, end, code);
        for (char **a = argv + 1; *a != NULL; a++)
            fprintf(log, " %s", *a);
        fputc('\n', log);
        fclose(log);
    }
    return code;
}
