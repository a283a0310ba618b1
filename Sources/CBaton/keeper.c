#define _GNU_SOURCE
#include "CBaton.h"
#include "child.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// The keeper: a child forked from the master that holds copies of the master's descriptors
// (listeners, its own sockets, each generation's channels and pidfd, the record memfd), so that
// a master killed outright loses nothing a successor needs; given the master's command (`exec`),
// it starts that command again when the master dies, and the new master adopts. It runs only
// the calls below, all async-signal-safe (it is forked from a multi-threaded process, and never
// execs itself): no malloc, no stdio, fixed tables.

#define KEEPER_MAX 512
#define KEEPER_NAME 64

static struct { char name[KEEPER_NAME]; int fd; } table[KEEPER_MAX];
static int entries;

// The command that starts the master again (`exec` + a memfd), or -1: not handed over, only run.
static int command_fd = -1;
// When the last respawns happened (ms), to stop a master that dies as soon as it adopts.
#define RESPAWN_BURST 5
#define RESPAWN_WINDOW_MS 30000
static long respawned_at[RESPAWN_BURST];
static int respawns;

static void say(const char *a, const char *b) {
    // One line on stderr, which the keeper shares with the master.
    struct iovec parts[4] = { { (void *)"baton keeper: ", 14 }, { (void *)a, strlen(a) }, { (void *)b, strlen(b) }, { (void *)"\n", 1 } };
    ssize_t ignored = writev(2, parts, 4);
    (void)ignored;
}

static int find(const char *name) {
    for (int i = 0; i < entries; i++) if (strcmp(table[i].name, name) == 0) return i;
    return -1;
}

static void drop(int index) {
    close(table[index].fd);
    table[index] = table[--entries];
}

static void put(const char *name, int fd) {
    int index = find(name);
    if (index >= 0) { close(table[index].fd); table[index].fd = fd; return; }
    if (entries == KEEPER_MAX || strlen(name) >= KEEPER_NAME) { say("table full or name too long; dropped ", name); close(fd); return; }
    strcpy(table[entries].name, name);
    table[entries].fd = fd;
    entries++;
}

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

// Every worker it holds a pidfd of ("pid." names) gets SIGTERM: no successor came, so the
// workers drain, also those of programs that do not watch their master.
static void release_workers(void) {
    for (int i = 0; i < entries; i++) {
        if (strncmp(table[i].name, "pid.", 4) == 0) syscall(SYS_pidfd_send_signal, table[i].fd, SIGTERM, NULL, 0);
    }
}

static int send_line(int sock, const char *text, int fd) {
    return baton_send_fd(sock, text, strlen(text), fd) == (ssize_t)strlen(text) ? 0 : -1;
}

// Hands every descriptor to a successor on `conn`: "kit N", then N messages "NAME" + its fd.
static int hand_over(int conn) {
    char line[48] = "kit ";
    baton_decimal(line + 4, entries);
    // baton_send_fd never blocks: on EAGAIN wait for room, 10 ms at a time, 2 s in all per message.
    for (int i = -1; i < entries; i++) {
        const char *text = i < 0 ? line : table[i].name;
        int fd = i < 0 ? -1 : table[i].fd;
        int sent = -1;
        for (int tries = 0; tries < 200 && sent < 0; tries++) {
            sent = send_line(conn, text, fd);
            if (sent < 0 && errno != EAGAIN) return -1;
            if (sent < 0) { struct pollfd p = { .fd = conn, .events = POLLOUT }; poll(&p, 1, 10); }
        }
        if (sent < 0) return -1;
    }
    return 0;
}

// The command's memfd: "path\0cwd\0argc\0argv[0]\0...argv[argc-1]\0env...\0", at most 64 KiB.
#define COMMAND_MAX 65536
#define COMMAND_ARGS 1024
static char command[COMMAND_MAX + 1];
static char *command_argv[COMMAND_ARGS + 1], *command_envp[COMMAND_ARGS + 1];

// In the grandchild: reads the command, resets what the keeper changed, and execs it. Never returns.
static void exec_command(void) {
    ssize_t size = pread(command_fd, command, COMMAND_MAX + 1, 0);
    if (size <= 0 || size > COMMAND_MAX) { say("cannot start the master again: ", "its command is empty, unreadable or over 64 KiB"); _exit(127); }
    command[size] = '\0';
    char *fields[3], *at = command, *end = command + size;
    for (int i = 0; i < 3; i++) {
        if (at >= end) { say("cannot start the master again: ", "its command is cut short"); _exit(127); }
        fields[i] = at;
        at += strlen(at) + 1;
    }
    long argc = 0;
    for (char *d = fields[2]; *d && argc <= COMMAND_ARGS; d++) argc = *d >= '0' && *d <= '9' ? argc * 10 + (*d - '0') : COMMAND_ARGS + 1;
    if (argc < 1 || argc > COMMAND_ARGS) { say("cannot start the master again: ", "its argument count is wrong"); _exit(127); }
    for (long i = 0; i < argc; i++) {
        if (at >= end) { say("cannot start the master again: ", "its arguments are cut short"); _exit(127); }
        command_argv[i] = at;
        at += strlen(at) + 1;
    }
    command_argv[argc] = NULL;
    int envc = 0;
    while (at < end && envc < COMMAND_ARGS) { command_envp[envc++] = at; at += strlen(at) + 1; }
    command_envp[envc] = NULL;
    if (chdir(fields[1]) != 0) { say("cannot start the master again: cannot enter its folder ", fields[1]); _exit(127); }
    // As a shell would start it: default signal actions (the keeper ignores some), nothing
    // blocked, only stdin/out/err open.
    baton_child_default_signals();
    baton_child_unblock_signals();
    baton_close_range(3, ~0U);
    execve(fields[0], command_argv, command_envp);
    say("cannot start the master again: execve failed for ", fields[0]);
    _exit(127);
}

// Starts the master's command again, in a grandchild that is reparented at once to the nearest
// subreaper (systemd, under a unit): not the keeper's child, so its death reaches whoever tracks
// it as the service's main process. Returns its pid, or 0 when it was not started.
static pid_t respawn_master(void) {
    long now = now_ms();
    int recent = 0;
    for (int i = 0; i < respawns && i < RESPAWN_BURST; i++) if (now - respawned_at[i] < RESPAWN_WINDOW_MS) recent++;
    if (recent >= RESPAWN_BURST) {
        say("started the master again 5 times within 30 s: not again; the workers wait for a successor", "");
        return 0;
    }
    respawned_at[respawns++ % RESPAWN_BURST] = now;
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) return 0;
    pid_t child = fork();
    if (child == 0) {
        close(pipefd[0]);
        pid_t grandchild = fork();
        if (grandchild == 0) exec_command();
        ssize_t ignored = write(pipefd[1], &grandchild, sizeof grandchild);
        (void)ignored;
        _exit(0);
    }
    close(pipefd[1]);
    pid_t started = 0;
    if (child > 0) {
        if (read(pipefd[0], &started, sizeof started) != sizeof started || started < 0) started = 0;
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR) {}
    }
    close(pipefd[0]);
    return started;
}

static void keeper_loop(int link, int adopt, int timeout_ms, pid_t master) {
    long deadline = 0;
    char text[256];
    for (;;) {
        struct pollfd fds[2] = { { .fd = link, .events = POLLIN }, { .fd = adopt, .events = POLLIN } };
        int wait = -1;
        if (link < 0) {
            long left = deadline - now_ms();
            if (left <= 0) {
                say("no successor came; the workers drain now", "");
                release_workers();
                _exit(0);
            }
            wait = (int)left;
        }
        int ready = poll(fds, 2, wait);
        if (ready < 0 && errno != EINTR) _exit(1);
        if (ready <= 0) continue;
        // Every message the master sent so far, before a successor is answered: one that asks
        // right after the master's death must not be told "alive" for want of reading its EOF.
        while (link >= 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            int fd = -1;
            ssize_t n = baton_recv_fd(link, text, sizeof text - 1, &fd);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && errno == EAGAIN) break;
            if (n <= 0) {
                if (fd >= 0) close(fd);
                close(link);
                link = -1;
                deadline = now_ms() + timeout_ms;
                char pid[24];
                baton_decimal(pid, master);
                say("the master died without a word: waiting for a successor; master pid ", pid);
                if (command_fd >= 0) {
                    pid_t started = respawn_master();
                    if (started > 0) { baton_decimal(pid, started); say("started the master's command again: pid ", pid); }
                }
                break;
            }
            text[n] = '\0';
            if (strncmp(text, "put ", 4) == 0 && fd >= 0) {
                put(text + 4, fd);
                fd = -1;
            } else if (strncmp(text, "del ", 4) == 0) {
                int index = find(text + 4);
                if (index >= 0) drop(index);
            } else if (strncmp(text, "sync ", 5) == 0) {
                // Every message before it is carried out (a `del` closed its copy): the master
                // waits for this echo before it tells a worker a socket is its alone.
                send_line(link, text, -1);
            } else if (strcmp(text, "exec") == 0) {
                if (command_fd >= 0) close(command_fd);
                command_fd = fd;
                fd = -1;
            } else if (strcmp(text, "bye") == 0) {
                _exit(0);
            }
            if (fd >= 0) close(fd);
        }
        if (fds[1].revents & POLLIN) {
            int conn = accept4(adopt, NULL, NULL, SOCK_CLOEXEC);
            if (conn < 0) continue;
            struct ucred peer;
            socklen_t length = sizeof peer;
            if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &peer, &length) < 0 || peer.uid != geteuid()) {
                close(conn);
                continue;
            }
            if (link >= 0) {
                char line[48] = "alive ";
                baton_decimal(line + 6, master);
                send_line(conn, line, -1);
                close(conn);
            } else if (hand_over(conn) == 0) {
                // That connection is the new master's link from now on.
                link = conn;
                master = peer.pid;
                char pid[24];
                baton_decimal(pid, master);
                say("handed everything to the new master, pid ", pid);
            } else {
                close(conn);
            }
        }
    }
}

pid_t baton_keeper_start(int link, int adopt, int timeout_ms) {
    pid_t master = getpid();
    // A child of the master, which reaps it after `bye`. (Forked twice instead, it would be
    // reparented at once, and a reaper that does not reap — a container's pid 1 that is not an
    // init — would keep its zombie after every clean stop.)
    pid_t pid = fork();
    if (pid != 0) return pid;
    // The keeper: only its two sockets (and stdin/out/err) stay open.
    int low = link < adopt ? link : adopt, high = link < adopt ? adopt : link;
    if (low > 3) baton_close_range(3, (unsigned)low - 1);
    baton_close_range((unsigned)low + 1, (unsigned)high - 1);
    baton_close_range((unsigned)high + 1, ~0U);
    prctl(PR_SET_NAME, "baton-keeper", 0, 0, 0);
    // Ctrl-C reaches the whole process group and SIGHUP is the master's: the master says "bye"
    // when it stops cleanly. SIGTERM ends the keeper (and with it the chance of an adoption).
    struct sigaction ignore = { .sa_handler = SIG_IGN }, fallback = { .sa_handler = SIG_DFL };
    sigaction(SIGINT, &ignore, NULL);
    sigaction(SIGHUP, &ignore, NULL);
    sigaction(SIGUSR2, &ignore, NULL);
    sigaction(SIGPIPE, &ignore, NULL);
    sigaction(SIGTERM, &fallback, NULL);
    baton_child_unblock_signals();
    // listen(2) again: on a unix socket it sets the credentials a client reads with SO_PEERCRED,
    // which are the keeper's from now on, not those of the master that bound it (long dead when
    // a successor asks). The master listened first, so no connect is ever refused in between.
    if (listen(adopt, 16) != 0) _exit(1);
    keeper_loop(link, adopt, timeout_ms, master);
    _exit(0);
}
