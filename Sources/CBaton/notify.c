#define _GNU_SOURCE
#include "CBaton.h"
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

// Fills `addr` for `path`; '@' names the abstract namespace, as in NOTIFY_SOCKET.
static int unix_address(const char *path, struct sockaddr_un *addr, socklen_t *alen) {
    size_t plen = strlen(path);
    if (plen == 0 || plen >= sizeof(addr->sun_path)) { errno = EINVAL; return -1; }
    memset(addr, 0, sizeof(*addr));
    addr->sun_family = AF_UNIX;
    memcpy(addr->sun_path, path, plen);
    if (path[0] == '@') addr->sun_path[0] = '\0';
    *alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + (path[0] == '@' ? 0 : 1));
    return 0;
}

int baton_notify_socket_open(const char *path) {
    struct sockaddr_un addr;
    socklen_t alen;
    if (unix_address(path, &addr, &alen) < 0) return -1;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) < 0 ||
        bind(fd, (struct sockaddr *)&addr, alen) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

ssize_t baton_recv_with_pid(int fd, char *buf, size_t len, pid_t *sender) {
    union { struct cmsghdr align; char space[CMSG_SPACE(sizeof(struct ucred))]; } control;
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
                          .msg_control = &control, .msg_controllen = sizeof(control) };
    *sender = 0;
    ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) return n;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS &&
            c->cmsg_len == CMSG_LEN(sizeof(struct ucred))) {
            struct ucred cred;
            memcpy(&cred, CMSG_DATA(c), sizeof(cred));
            *sender = cred.pid;
        } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            // Nobody should send us descriptors; close them rather than leak them.
            int *passed = (int *)CMSG_DATA(c);
            size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < count; i++) close(passed[i]);
        }
    }
    if (msg.msg_flags & MSG_TRUNC) { errno = EMSGSIZE; return -1; }
    return n;
}

int baton_notify_send(const char *path, const char *msg, size_t len, int dontwait) {
    struct sockaddr_un addr;
    socklen_t alen;
    if (unix_address(path, &addr, &alen) < 0) return -1;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    ssize_t n = sendto(fd, msg, len, MSG_NOSIGNAL | (dontwait ? MSG_DONTWAIT : 0), (struct sockaddr *)&addr, alen);
    int saved = errno;
    close(fd);
    errno = saved;
    return n == (ssize_t)len ? 0 : -1;
}
