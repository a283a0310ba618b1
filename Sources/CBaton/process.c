#define _GNU_SOURCE
#include "CBaton.h"
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

int baton_pidfd_open(pid_t pid) {
    // pidfd descriptors are always close-on-exec.
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

int baton_accept(int fd) {
    return accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
}
