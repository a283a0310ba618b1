#define _GNU_SOURCE
#include "CBaton.h"
#include "child.h"
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

void baton_child_default_signals(void) {
    // The kernel's struct sigaction: no restorer is needed for SIG_DFL.
    struct { void *handler; unsigned long flags; void *restorer; unsigned long mask; } fallback = { SIG_DFL, 0, NULL, 0 };
    for (int s = 1; s <= 64; s++)
        if (s != SIGKILL && s != SIGSTOP) syscall(SYS_rt_sigaction, s, &fallback, NULL, sizeof fallback.mask);
}

int baton_child_unblock_signals(void) {
    sigset_t none;
    sigemptyset(&none);
    return sigprocmask(SIG_SETMASK, &none, NULL);
}

int baton_close_range(unsigned first, unsigned last) {
    if (first > last) return 0;
    if (syscall(SYS_close_range, first, last, 0) == 0) return 0;
    if (errno != ENOSYS) return -1;
    return baton_close_each(first, last);
}

int baton_close_each(unsigned first, unsigned last) {
    // Kernels before 5.9: one by one, up to the soft limit (no descriptor can be open above it,
    // unless the limit was lowered after it was opened) and never more than 2^20 calls.
    struct rlimit limit;
    if (syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, &limit) != 0) return -1;
    if (limit.rlim_cur == 0) return 0;
    unsigned long end = last;
    if (end >= limit.rlim_cur) end = limit.rlim_cur - 1;
    if (end >= (1ul << 20)) end = (1ul << 20) - 1;
    for (unsigned long fd = first; fd <= end; fd++) close((int)fd);
    return 0;
}

void baton_decimal(char *out, long value) {
    char digits[24];
    int n = 0;
    do { digits[n++] = (char)('0' + value % 10); value /= 10; } while (value > 0 && n < 20);
    while (n > 0) *out++ = digits[--n];
    *out = '\0';
}
