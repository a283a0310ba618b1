#define _GNU_SOURCE
#include "CBaton.h"
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
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

int baton_sched_batch(void) {
    struct sched_param param = { .sched_priority = 0 };
    // On Linux pid 0 names the calling thread, not the whole process.
    return sched_setscheduler(0, SCHED_BATCH, &param);
}

int baton_eventfd(void) {
    return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

int baton_set_thread_name(const char *name) {
    return pthread_setname_np(pthread_self(), name);
}

int baton_thread_nice(void) {
    return getpriority(PRIO_PROCESS, (id_t)gettid());
}

int baton_thread_lower_priority(int increment) {
    // With PRIO_PROCESS and a thread id, Linux reads and sets that one thread's nice value
    // (threads it creates later inherit it); the rest of the process keeps its own.
    errno = 0;
    int current = getpriority(PRIO_PROCESS, (id_t)gettid());
    if (current == -1 && errno != 0) return -1;
    int target = current + increment > 19 ? 19 : current + increment;
    return setpriority(PRIO_PROCESS, (id_t)gettid(), target);
}

int baton_pidfd_send_signal(int pidfd, int sig) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

pid_t baton_peer_pid(int fd) {
    struct ucred peer;
    socklen_t length = sizeof peer;
    return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &length) == 0 ? peer.pid : -1;
}
