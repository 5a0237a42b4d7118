/* The pod sandbox ("pause") process of the CRI tests: PID 1 of a pod's namespaces. It holds
 * them open, reaps every child that is reparented to it (a pod that shares its pid namespace
 * hands it the orphans), and exits 0 on SIGTERM or SIGINT (PID 1 of a pid namespace ignores
 * signals it has no handler for). Built static by build-pause-image.sh; no libc beyond signals,
 * waitpid and pause. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_term(int sig) {
    (void)sig;
    _exit(0);
}

static void on_child(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(int argc, char **argv) {
    struct sigaction sa;
    (void)argv;
    if (argc > 1) {
        return 2;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    if (sigaction(SIGTERM, &sa, NULL) || sigaction(SIGINT, &sa, NULL)) {
        return 1;
    }
    sa.sa_handler = on_child;
    sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    if (sigaction(SIGCHLD, &sa, NULL)) {
        return 1;
    }
    for (;;) {
        pause();
    }
}
