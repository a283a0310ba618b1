#define _GNU_SOURCE
#include "CBaton.h"
#include "child.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

// Why not posix_spawn: LISTEN_PID must equal the worker's own pid, which posix_spawn cannot know
// before exec; the alternative, a `/bin/sh -c 'LISTEN_PID=$$ … exec'` shim, costs a second exec
// (and the shell's own start-up) on every upgrade. So this does what glibc's posix_spawn does
// (clone with CLONE_VM|CLONE_VFORK on a small private stack) plus one thing: it writes the
// child's pid into a slot of a pre-built environment before execve.
//
// The child shares the parent's memory (and the calling thread's TLS, errno included) until it
// execs, in a process with many threads: it may only make async-signal-safe calls (no malloc, no
// locks, no printf), and every buffer it touches is prepared by the parent beforehand. The parent
// thread is suspended until the child has exec'd or exited (CLONE_VFORK), so the child reports a
// failure simply by storing errno in `struct child` before _exit: no pipe is needed.

#define MAX_FDS 64
#define STACK_SIZE (64 * 1024)

struct child {
    const char *path;
    char *const *argv;
    char **envp;
    char *listen_pid;   // "LISTEN_PID=" + room for the digits, or NULL
    const int *moved;   // the sources, duplicated above the target range
    int nfds;
    int first_free;     // 3 + nfds: every descriptor from here up is closed
    volatile int err;   // set by the child when something fails, read by the parent afterwards
};

static int child_main(void *arg) {
    struct child *c = arg;
    // 1. Every disposition back to default while all signals are still blocked (the parent
    //    blocked them before clone): a handler of the master must never run in this child, which
    //    shares the master's memory, and a signal the master ignores must not stay ignored.
    baton_child_default_signals();
    // 2. Listeners (and the control fd) at 3, 4, …; dup2 clears close-on-exec on the copy.
    for (int i = 0; i < c->nfds; i++)
        if (dup2(c->moved[i], 3 + i) < 0) goto fail;
    // 3. Nothing else: NIO leaves accepted and client sockets and its epoll fd without
    //    close-on-exec, so each generation would inherit every connection of the previous one.
    if (baton_close_range((unsigned)c->first_free, ~0U) != 0) goto fail;
    // 4. The one thing posix_spawn cannot do: LISTEN_PID is this process's pid.
    if (c->listen_pid) baton_decimal(c->listen_pid + sizeof "LISTEN_PID=" - 1, getpid());
    // 5. Swift and NIO threads block most signals and the mask survives exec: empty it.
    if (baton_child_unblock_signals() != 0) goto fail;
    execve(c->path, c->argv, c->envp);
fail:
    c->err = errno ? errno : EINVAL;
    _exit(127);
}

int baton_spawn(const char *path, char *const argv[], char *const envp[],
                const int *fds, int nfds, int set_listen_pid, pid_t *pid) {
    if (nfds < 0 || nfds > MAX_FDS) return EINVAL;
    struct child c = {.path = path, .argv = argv, .nfds = nfds, .first_free = 3 + nfds};
    int moved[MAX_FDS];
    int made = 0, err = 0;
    char listen_pid[32] = "LISTEN_PID=";
    char **env = NULL;
    char *stack = NULL;
    // Duplicate every source above the target range first (close-on-exec, so the worker never
    // keeps these copies), so that placing one listener at 3+i can never clobber another source
    // that happens to live there.
    for (; made < nfds; made++) {
        moved[made] = fcntl(fds[made], F_DUPFD_CLOEXEC, c.first_free);
        if (moved[made] < 0) { err = errno; goto out; }
    }
    c.moved = moved;
    // The child's environment: `envp` without any LISTEN_PID, then the slot the child fills in.
    size_t count = 0;
    while (envp[count]) count++;
    env = malloc((count + 2) * sizeof *env);
    stack = malloc(STACK_SIZE);
    if (!env || !stack) { err = ENOMEM; goto out; }
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        if (!set_listen_pid || strncmp(envp[i], "LISTEN_PID=", strlen("LISTEN_PID=")) != 0) env[n++] = envp[i];
    if (set_listen_pid) { env[n++] = listen_pid; c.listen_pid = listen_pid; }
    env[n] = NULL;
    c.envp = env;

    // Block every signal around clone (see child_main, step 1); the child empties its mask itself.
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    // CLONE_VFORK: this thread resumes once the child exec'd or exited. SIGCHLD: an ordinary
    // child for waitpid. The stack grows down: pass its (16-byte aligned) top.
    char *top = (char *)(((unsigned long)(stack + STACK_SIZE)) & ~15UL);
    pid_t child = clone(child_main, top, CLONE_VM | CLONE_VFORK | SIGCHLD, &c);
    if (child < 0) err = errno;
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    if (child > 0 && c.err) {
        // exec failed: reap the child here, so the caller sees an error and no exit status 127.
        err = c.err;
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR) {}
    } else if (child > 0) {
        *pid = child;
    }
out:
    for (int i = 0; i < made; i++) close(moved[i]);
    free(env);
    free(stack);
    return err;
}
