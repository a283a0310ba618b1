#define _GNU_SOURCE
#include "CBaton.h"
#include <sys/ioctl.h>

int baton_pending_input(int fd) {
    int pending = 0;
    if (ioctl(fd, FIONREAD, &pending) < 0) return -1;
    return pending;
}

#include <errno.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>

int baton_tcp_consumed(int fd, uint64_t *consumed, int *established) {
    // bytes_received (rcv_nxt's progress) less what waits unread (rcv_nxt - copied_seq) is what
    // every reader took; two TCP_INFOs around SIOCINQ make it exact when no byte arrives between.
    for (int attempt = 0; attempt < 8; attempt++) {
        struct tcp_info before, after;
        socklen_t length = sizeof before;
        if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &before, &length) < 0) return -1;
        if (length < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof before.tcpi_bytes_received) {
            errno = ENOTSUP;  // a kernel before 4.1 does not count the bytes received
            return -1;
        }
        int unread = 0;
        if (ioctl(fd, SIOCINQ, &unread) < 0) return -1;
        length = sizeof after;
        if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &after, &length) < 0) return -1;
        if (before.tcpi_bytes_received != after.tcpi_bytes_received) continue;
        *consumed = after.tcpi_bytes_received - (uint64_t)unread;
        *established = after.tcpi_state == 1;  // TCP_ESTABLISHED
        return 0;
    }
    errno = EAGAIN;
    return -1;
}

int baton_peer_closed(int sock) {
    struct pollfd entry = { .fd = sock, .events = 0 };
    if (poll(&entry, 1, 0) < 0) return -1;
    return (entry.revents & (POLLHUP | POLLERR)) != 0;
}

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

ssize_t baton_send_fd(int sock, const void *buf, size_t len, int fd) {
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    union { char space[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control;
    memset(&control, 0, sizeof control);
    struct msghdr message = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (fd >= 0) {
        message.msg_control = control.space;
        message.msg_controllen = sizeof control.space;
        struct cmsghdr *header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(header), &fd, sizeof(int));
    }
    return sendmsg(sock, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
}

ssize_t baton_recv_fd(int sock, void *buf, size_t len, int *fd) {
    *fd = -1;
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    // Room for a few descriptors: a peer that attaches more than one gets the extras closed.
    union { char space[CMSG_SPACE(8 * sizeof(int))]; struct cmsghdr align; } control;
    struct msghdr message = { .msg_iov = &iov, .msg_iovlen = 1,
                              .msg_control = control.space, .msg_controllen = sizeof control.space };
    ssize_t n = recvmsg(sock, &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) return -1;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header; header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            int received;
            memcpy(&received, CMSG_DATA(header) + i * sizeof(int), sizeof(int));
            if (*fd < 0) *fd = received; else close(received);
        }
    }
    return n;
}
