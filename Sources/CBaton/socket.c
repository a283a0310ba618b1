#define _GNU_SOURCE
#include "CBaton.h"
#include <sys/ioctl.h>

int baton_pending_input(int fd) {
    int pending = 0;
    if (ioctl(fd, FIONREAD, &pending) < 0) return -1;
    return pending;
}
