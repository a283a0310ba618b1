// CBaton: the few libc calls Swift's Glibc module cannot reach (they need _GNU_SOURCE, are
// variadic, or need the CMSG_* macros). Each function is small and documented at its definition.
#ifndef CBATON_H
#define CBATON_H

#include <sys/types.h>
#include <stddef.h>
#include <stdint.h>

/// Starts `path` with `argv`/`envp` (clone with CLONE_VM|CLONE_VFORK, then execve: no shell, no
/// fork of the Swift runtime). The `nfds` descriptors in `fds` are placed at 3, 4, … (close-on-exec
/// cleared); every other descriptor from 3 up is closed in the child; the signal mask is emptied
/// and every signal's disposition reset to default. With `set_listen_pid`, the child's environment
/// is `envp` without any LISTEN_PID plus `LISTEN_PID=<the child's own pid>`.
/// Returns 0 and stores the pid, or an errno value: also when execve itself failed (missing
/// interpreter, bad format, …), in which case the child is already reaped.
int baton_spawn(const char *path, char *const argv[], char *const envp[],
                const int *fds, int nfds, int set_listen_pid, pid_t *pid);

/// Opens a non-blocking, close-on-exec datagram socket bound to the unix address `path`
/// ('@' prefix: abstract namespace), with SO_PASSCRED so that each datagram received carries
/// its sender's credentials. Returns the fd or -1 with errno set.
int baton_notify_socket_open(const char *path);

/// Receives one datagram without blocking (MSG_DONTWAIT) into `buf` (at most `len` bytes) and
/// stores the sender's pid from SCM_CREDENTIALS (0 when absent). Returns the byte count, or -1
/// with errno set.
ssize_t baton_recv_with_pid(int fd, char *buf, size_t len, pid_t *sender);

/// Sends `msg` as one datagram to the unix socket named `path` ('@' prefix: abstract
/// namespace), as sd_notify(3) does. With `dontwait`, a full queue fails at once (EAGAIN) instead
/// of blocking until the reader makes room. Returns 0 or -1 with errno set.
int baton_notify_send(const char *path, const char *msg, size_t len, int dontwait);

/// pidfd_open(2): a descriptor (close-on-exec) that becomes readable when `pid` exits.
/// Returns the fd or -1 with errno set.
int baton_pidfd_open(pid_t pid);

/// accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC). Returns the connection's fd, or -1
/// with errno set (EAGAIN when another process took the connection first).
int baton_accept(int fd);

/// Puts the calling thread under SCHED_BATCH (same share of CPU as any thread, but its wake-ups
/// never preempt a running thread: it waits for the next tick or for the CPU to be free).
/// Returns 0 or -1 with errno set.
int baton_sched_batch(void);

/// The calling thread's nice value (-20…19), or -1 with errno set (-1 is also a valid value:
/// clear errno first to tell them apart).
int baton_thread_nice(void);

/// Adds `increment` to the calling thread's nice value (at most 19: a smaller share of a busy
/// CPU). Raising it needs no privilege; lowering it again later needs CAP_SYS_NICE.
/// Returns 0 or -1 with errno set.
int baton_thread_lower_priority(int increment);

/// Names the calling thread (at most 15 bytes are kept), as `top -H` and `/proc/…/comm` show it.
/// Returns 0 or an errno value.
int baton_set_thread_name(const char *name);

/// eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC). Returns the fd or -1 with errno set.
int baton_eventfd(void);

/// ioctl(fd, FIONREAD): how many bytes wait unread in the socket's receive queue. Returns the
/// count, or -1 with errno set. (ioctl is variadic, which Swift cannot call.)
int baton_pending_input(int fd);

/// What the readers of the TCP socket `fd` have taken from it so far: the bytes received less
/// those still unread (`consumed`), exact when read while nobody else reads it; and whether the
/// connection is still ESTABLISHED (neither side has closed or shut down). Returns 0, or -1 with
/// errno set (EAGAIN: bytes kept arriving).
int baton_tcp_consumed(int fd, uint64_t *consumed, int *established);

/// Whether the other end of the connected unix socket `sock` is closed (poll: POLLHUP). Returns
/// 1 or 0, or -1 with errno set.
int baton_peer_closed(int sock);

/// Sends `len` bytes of `buf` on the unix socket `sock` as one message, with `fd` attached as
/// SCM_RIGHTS when it is >= 0 (the receiver gets its own descriptor for the same open file).
/// Never blocks (MSG_DONTWAIT) and never raises SIGPIPE. Returns the bytes sent, or -1 with errno
/// set (EAGAIN: the receiver's queue is full).
ssize_t baton_send_fd(int sock, const void *buf, size_t len, int fd);

/// Receives one message from `sock` without blocking into `buf` (at most `len` bytes). The first
/// descriptor attached as SCM_RIGHTS is stored in `fd` (close-on-exec), -1 when none; further
/// ones are closed. Returns the byte count (0: the peer closed), or -1 with errno set.
ssize_t baton_recv_fd(int sock, void *buf, size_t len, int *fd);

/// memfd_create(name, MFD_CLOEXEC): an anonymous file. Returns the fd or -1 with errno set.
int baton_memfd_create(const char *name);

/// Marks every descriptor from 3 up close-on-exec but the `nkeep` in `keep`, ignores SIGHUP,
/// SIGINT, SIGTERM and SIGUSR2 (one arriving before the next image handles them again is lost,
/// instead of ending the process), then execve(path, argv, envp) in this process. Returns only on failure: the errno value, with close-on-exec set again.
int baton_reexec(const char *path, char *const argv[], char *const envp[], const int *keep, int nkeep);

/// Waits at most `timeout_ms` for the child `pid` to exit (through a pidfd) and reaps it.
/// Returns 0 with the waitpid status stored, ETIMEDOUT (the child still runs), or an errno value.
int baton_wait_exit(pid_t pid, int timeout_ms, int *status);

/// Forks the keeper (keeper.c): a child that holds descriptors the master sends it on `link` (a
/// SOCK_SEQPACKET socket; messages `put NAME` + one fd, `del NAME`, `bye`) and, once the master
/// is gone (EOF on `link` without `bye`), hands them all to the first process of the same user
/// that connects to the listening socket `adopt` (`kit N`, then N messages `NAME` + fd); while
/// the master lives, such a process is told `alive PID`. With no successor within `timeout_ms`
/// it sends SIGTERM to every worker it holds a pidfd of (`pid.` names) and exits. `exec` + a
/// memfd gives it the master's command (`path\0cwd\0argc\0argv…\0env…\0`; `exec` alone takes it
/// back): when the master dies, the keeper starts that command again at once, in a grandchild
/// (at most 5 times in 30 s). Returns the keeper's pid in the master, or -1 with errno set.
pid_t baton_keeper_start(int link, int adopt, int timeout_ms);

/// close_range(first, last, 0), also on kernels before 5.9, which lack it: there, the same as
/// `baton_close_each`. Async-signal-safe. Returns 0 or -1 with errno set.
int baton_close_range(unsigned first, unsigned last);

/// Closes every descriptor from `first` to `last` one by one, up to the soft RLIMIT_NOFILE and at
/// most 2^20 of them: what `baton_close_range` falls back to. Async-signal-safe. Returns 0, or -1
/// with errno set when the limit cannot be read.
int baton_close_each(unsigned first, unsigned last);

/// The pid of the process at the other end of the unix socket `fd` (SO_PEERCRED), or -1.
pid_t baton_peer_pid(int fd);

/// pidfd_send_signal(2) with no siginfo. Returns 0 or -1 with errno set.
int baton_pidfd_send_signal(int pidfd, int sig);

#endif
