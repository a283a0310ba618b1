#define _GNU_SOURCE
#include "CBaton.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <unistd.h>

int baton_spawn(const char *path, char *const argv[], char *const envp[],
                const int *fds, int nfds, pid_t *pid) {
    if (nfds < 0 || nfds > 64) return EINVAL;
    int first_free = 3 + nfds;
    int moved[64];
    int made = 0, err = 0;
    // Duplicate every source above the target range first, so that placing one listener at
    // 3+i can never clobber another source that happens to live there.
    for (; made < nfds; made++) {
        moved[made] = fcntl(fds[made], F_DUPFD_CLOEXEC, first_free);
        if (moved[made] < 0) { err = errno; goto out; }
    }
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    if ((err = posix_spawn_file_actions_init(&actions))) goto out;
    if ((err = posix_spawnattr_init(&attr))) { posix_spawn_file_actions_destroy(&actions); goto out; }
    for (int i = 0; i < nfds && !err; i++)
        err = posix_spawn_file_actions_adddup2(&actions, moved[i], 3 + i);  // dup2 clears CLOEXEC
    // NIO opens client sockets and its epoll fd without CLOEXEC: close everything else.
    if (!err) err = posix_spawn_file_actions_addclosefrom_np(&actions, first_free);
    // Swift/NIO threads block most signals and posix_spawn copies the caller's mask.
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    if (!err) err = posix_spawnattr_setsigmask(&attr, &none);
    if (!err) err = posix_spawnattr_setsigdefault(&attr, &all);
    if (!err) err = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    if (!err) err = posix_spawn(pid, path, &actions, &attr, argv, envp);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
out:
    for (int i = 0; i < made; i++) close(moved[i]);
    return err;
}
