// The steps every process Baton starts takes between fork (or clone) and execve: workers
// (spawn.c) and a master started again by the keeper (keeper.c). All async-signal-safe: they
// run in a child of a multi-threaded process, which may share its parent's memory.
#ifndef CBATON_CHILD_H
#define CBATON_CHILD_H

#include <sys/types.h>

/// Every signal's action back to default, SIGKILL and SIGSTOP aside. The raw system call: glibc's
/// sigaction() refuses its own signals 32 and 33, and an ignored signal stays ignored across execve.
void baton_child_default_signals(void);

/// An empty signal mask: Swift and NIO threads block most signals, and the mask survives execve.
/// Returns 0 or -1 with errno set.
int baton_child_unblock_signals(void);

/// Writes `value` (>= 0) in decimal at `out`, NUL-terminated (at most 20 digits): snprintf is not
/// async-signal-safe.
void baton_decimal(char *out, long value);

#endif
