#define _GNU_SOURCE
#include "CBaton.h"
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <stdlib.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int baton_memfd_create(const char *name) {
    return memfd_create(name, MFD_CLOEXEC);
}

// Marks every descriptor from 3 up close-on-exec: NIO and the runtime open some without it
// (epoll, eventfd), and each exec would otherwise leak them into the next image.
static void cloexec_from_3(void) {
    if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return;
    DIR *folder = opendir("/proc/self/fd");
    if (!folder) return;
    struct dirent *entry;
    while ((entry = readdir(folder))) {
        int fd = atoi(entry->d_name);
        if (fd > 2 && fd != dirfd(folder)) fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC);
    }
    closedir(folder);
}

// The signals a master handles. execve resets a handled signal to its default action, which for
// these ends the process, until the next image has installed its handlers again (tens of ms);
// an ignored signal stays ignored across execve. Blocking them would not do: libdispatch parks
// the new image's main thread in sigsuspend() with an empty mask early in its start-up.
static const int master_signals[] = {SIGHUP, SIGINT, SIGTERM, SIGUSR2};
#define MASTER_SIGNALS (int)(sizeof master_signals / sizeof master_signals[0])

int baton_reexec(const char *path, char *const argv[], char *const envp[], const int *keep, int nkeep) {
    cloexec_from_3();
    struct sigaction ignore = {.sa_handler = SIG_IGN}, previous[MASTER_SIGNALS];
    sigemptyset(&ignore.sa_mask);
    for (int s = 0; s < MASTER_SIGNALS; s++) sigaction(master_signals[s], &ignore, &previous[s]);
    int i;
    for (i = 0; i < nkeep; i++) {
        int flags = fcntl(keep[i], F_GETFD);
        if (flags < 0 || fcntl(keep[i], F_SETFD, flags & ~FD_CLOEXEC) < 0) break;
    }
    int err = i < nkeep ? errno : 0;
    if (!err) {
        execve(path, argv, envp);
        err = errno;
    }
    // Still this image: every descriptor goes back to close-on-exec, so no child inherits it.
    for (int j = 0; j < i; j++) fcntl(keep[j], F_SETFD, fcntl(keep[j], F_GETFD) | FD_CLOEXEC);
    for (int s = 0; s < MASTER_SIGNALS; s++) sigaction(master_signals[s], &previous[s], NULL);
    return err;
}

int baton_wait_exit(pid_t pid, int timeout_ms, int *status) {
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) return errno;
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    int rc;
    do rc = poll(&p, 1, timeout_ms); while (rc < 0 && errno == EINTR);
    int err = rc < 0 ? errno : rc == 0 ? ETIMEDOUT : 0;
    close(pidfd);
    if (err) return err;
    while (waitpid(pid, status, 0) < 0) if (errno != EINTR) return errno;
    return 0;
}
