/*
 * minibox-shim: the per-container supervisor, minibox's answer to conmon.
 *
 * It is exec'd by the process that unshared the container's namespaces and forked its
 * PID 1, so it is PID 1's parent. It stays for the container's whole life, and its
 * memory is paid once per container: that is why it is C and not Python (an idle
 * Python process measures ~7 MiB PSS here; this one ~0.2 MiB).
 *
 * What it does:
 *   - copies the container's stdout/stderr (pipes, or a pty master it receives over a
 *     unix socket) into the log file, in the CRI "k8s-file" format Podman also uses:
 *         2026-11-26T04:00:00.123456789Z stdout F hello
 *     (tag F: the line ended; P: partial line, continued in the next record);
 *     the log is capped: past MAX_SIZE bytes it becomes LOG.1 (LOG.1 to LOG.2, ...,
 *     keeping MAX_FILES files in all, as Docker's `local` driver does), and when the disk
 *     is full what cannot be written is dropped: the container never waits for its log;
 *   - when attached, also copies them to its own stdout/stderr, and with -i copies its
 *     stdin to the container: into the pty (-t, following window size changes), or into a
 *     pipe, so the caller's terminal itself is never handed to the container (a TIOCSTI on
 *     it would type commands into the caller's shell). Detached with -i, the pipe stays
 *     open and empty, as `docker run -di` keeps stdin;
 *   - listens on the container's attach socket: one `minibox attach` client at a time
 *     takes the terminal's place (output to it, framed as Docker's attach stream when
 *     there is no pty, so stdout and stderr stay apart; its input to the container);
 *   - with a pty, watches the input for Ctrl-P Ctrl-Q (Docker's detach keys): the caller's
 *     terminal is let go (NOTIFY_FD tells `minibox run -it` so), or the attach client is
 *     dropped, and the container runs on, detached;
 *   - keeps open whatever fds it inherited (the published ports' host sockets), so no
 *     other program can bind those ports while the container runs;
 *   - when PID 1 exits: drains the output, writes exit.json atomically, runs the exit
 *     command (minibox's cleanup) if one was given, waits for it, and exits with PID 1's
 *     exit code (128+signal when a signal killed it).
 *
 * Usage: minibox-shim PID EXIT_FILE LOG_FILE OUT_FD ERR_FD CONSOLE_FD IN_FD ATTACH MAX_SIZE MAX_FILES
 *                     LISTEN_FD NOTIFY_FD [-- EXIT_CMD...]
 *   OUT_FD/ERR_FD/CONSOLE_FD/IN_FD/LISTEN_FD/NOTIFY_FD are -1 when unused. ATTACH: 0
 *   detached, 1 copy output to our stdout/stderr, 3 also copy our stdin to the container (to
 *   the pty, or to IN_FD). The exit command runs when the shim is (or has become) detached.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define BUF 16384

static int log_fd = -1;
static int attach;
/* The terminal the container's output goes to and its input comes from: our own stdio
   when attached, an attach client's socket, or none (-1). */
static int term_in = -1, term_out = -1, term_err = -1, client = -1;
static int notify_fd = -1, detached_once;
static int has_pty; /* the container has a terminal: one raw stream, no framing */
static const char *log_path;
static long long log_size, log_max;
static int log_files = 1;
static unsigned long log_seq;  /* which log file this is: 0 the first, +1 per rotation */
static int log_open_line[2];  /* stdout, stderr: its last record was P, a line not ended yet */

/* Each log file carries its number and the streams whose first record in it goes on with
   a line begun in the file before ("7 stdout"), so that a follower that missed a file (the
   rotation dropped it before it was read) joins no line across the gap and drops only what
   finishes a line it missed. Best effort: on a file system without user xattrs the
   follower cannot tell. */
static void log_label(void) {
    char b[48];
    int n = snprintf(b, sizeof b, "%lu%s%s", log_seq, log_open_line[0] ? " stdout" : "",
                     log_open_line[1] ? " stderr" : "");
    fsetxattr(log_fd, "user.minibox.seq", b, (size_t)n, 0);
}

static void write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return; /* a closed reader must not stop the container's logging */
        }
        p += w;
        n -= (size_t)w;
    }
}

static void timestamp(char *out, size_t len) {
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, len - n, ".%09ldZ", ts.tv_nsec);
}

/* Past the cap: LOG.(k-1) -> LOG.k, ..., LOG -> LOG.1, and a fresh LOG (or, with a single
   file, LOG emptied). LOG never goes missing, so a reader (`logs -f`) always finds it:
   LOG.1 is made a second name of LOG first, then a fresh file is renamed over LOG. A
   reader that lists the files in between sees LOG.1 and LOG as one inode and reads it
   once. A failed step (a full disk) is ignored: writing goes on, or is dropped. */
static void rotate(void) {
    char from[4096], to[4096], fresh[4096];
    for (int k = log_files - 1; k >= 2; k--) {
        snprintf(from, sizeof from, "%s.%d", log_path, k - 1);
        snprintf(to, sizeof to, "%s.%d", log_path, k);
        rename(from, to);
    }
    if (log_files > 1) {
        snprintf(to, sizeof to, "%s.1", log_path);
        unlink(to);  /* only there if the rename above failed: LOG is the newer one */
        link(log_path, to);
    }
    snprintf(fresh, sizeof fresh, "%s.fresh", log_path);
    if (log_fd >= 0) close(log_fd);
    log_fd = open(fresh, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
    if (log_fd >= 0) {
        log_seq++;
        log_label();  /* before it takes the name: a follower never sees it unlabelled */
        if (rename(fresh, log_path) == 0) {
            log_size = 0;
            return;
        }
        log_seq--;
        close(log_fd);
    }
    /* no fresh file (no inode left): go on appending to LOG, and try again past the cap */
    unlink(fresh);
    log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    struct stat st;
    log_size = (log_fd >= 0 && fstat(log_fd, &st) == 0) ? (long long)st.st_size : 0;
}

static void log_write(const char *p, size_t n) {
    if (log_fd < 0) return;
    write_all(log_fd, p, n);
    log_size += (long long)n;
}

/* One CRI log record per line of the chunk. */
static void log_chunk(int stream, const char *p, size_t n) {
    const char *name = stream ? "stderr" : "stdout";
    char ts[64];
    timestamp(ts, sizeof ts);
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t len = nl ? (size_t)(nl - p) : n;
        char head[128];
        int h = snprintf(head, sizeof head, "%s %s %c ", ts, name, nl ? 'F' : 'P');
        if (log_max > 0 && log_size + h + (long long)len + 1 > log_max && log_size > 0) rotate();
        log_write(head, (size_t)h);
        log_write(p, len);
        log_write("\n", 1);
        log_open_line[stream ? 1 : 0] = !nl;
        if (!nl) break;
        p += len + 1;
        n -= len + 1;
    }
}

/* Read what is there; return 0 at EOF (or EIO: a pty whose last slave closed). */
static int pump(int fd, int stream) {
    char buf[BUF];
    ssize_t r = read(fd, buf, sizeof buf);
    if (r < 0) return errno == EAGAIN || errno == EINTR;
    if (r == 0) return 0;
    log_chunk(stream, buf, (size_t)r);
    if (client >= 0 && !has_pty) {
        /* Docker's attach stream without a tty: each chunk framed by 8 bytes, the stream
           (1 stdout, 2 stderr), three zeros, and the length (big-endian), so the client
           can put stdout and stderr back where they belong. */
        unsigned char head[8] = {(unsigned char)(stream ? 2 : 1), 0, 0, 0,
                                 (unsigned char)(r >> 24), (unsigned char)(r >> 16), (unsigned char)(r >> 8),
                                 (unsigned char)r};
        write_all(client, (const char *)head, sizeof head);
        write_all(client, buf, (size_t)r);
    } else if (term_out >= 0) {
        write_all(stream ? term_err : term_out, buf, (size_t)r);
    }
    return 1;
}

/* Let go of the terminal: an attach client is dropped; our own stdio (the caller's
   terminal, under `run -it`) is swapped for /dev/null, and the caller told so. */
static void let_go(void) {
    if (client >= 0) {
        close(client);
        client = -1;
    } else if (term_out >= 0) {
        if (notify_fd >= 0) { write_all(notify_fd, "d", 1); close(notify_fd); notify_fd = -1; }
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        if (null > 2) close(null);
        setsid(); /* out of the caller's session: its shell's job control is not ours */
        detached_once = 1;
    }
    term_in = term_out = term_err = -1;
}

/* Input for the pty, Ctrl-P Ctrl-Q taken out: returns 1 when the pair was typed (what came
   before it is written first). A lone Ctrl-P is held until the next byte says what it was. */
static int to_pty(int master, const char *p, size_t n, int *held) {
    char out[BUF + 1];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (*held) {
            *held = 0;
            if (p[i] == 0x11) { write_all(master, out, k); return 1; }
            out[k++] = 0x10;
        }
        if (p[i] == 0x10) { *held = 1; continue; }
        out[k++] = p[i];
        if (k >= BUF) { write_all(master, out, k); k = 0; }
    }
    write_all(master, out, k);
    return 0;
}

static int recv_fd(int sock) {
    char data[1];
    char control[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {data, sizeof data};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) <= 0) return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (!c || c->cmsg_type != SCM_RIGHTS) return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

static void copy_winsize(int master) {
    struct winsize ws;
    if (master >= 0 && ioctl(0, TIOCGWINSZ, &ws) == 0) ioctl(master, TIOCSWINSZ, &ws);
}

static void write_exit_file(const char *path, int code, int sig) {
    char tmp[4096], ts[64], body[256];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    timestamp(ts, sizeof ts);
    int n = snprintf(body, sizeof body,
                     "{\"exit_code\": %d, \"signal\": %d, \"finished_at\": \"%s\"}\n", code, sig, ts);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return;
    write_all(fd, body, (size_t)n);
    fsync(fd);
    close(fd);
    rename(tmp, path);
}

static void run_exit_command(char **argv) {
    pid_t pid = fork();  /* the shim holds no descriptor above 2 by now (see main) */
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        setsid();
        execvp(argv[0], argv);
        _exit(127);
    }
    if (pid > 0) {
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 13) {
        fprintf(stderr, "usage: %s PID EXIT_FILE LOG_FILE OUT_FD ERR_FD CONSOLE_FD IN_FD ATTACH MAX_SIZE MAX_FILES "
                        "LISTEN_FD NOTIFY_FD [-- CMD...]\n", argv[0]);
        return 125;
    }
    pid_t child = (pid_t)atoi(argv[1]);
    const char *exit_file = argv[2];
    int fds[2] = {atoi(argv[4]), atoi(argv[5])};
    int console_sock = atoi(argv[6]);
    has_pty = console_sock >= 0;
    int in_fd = atoi(argv[7]);
    attach = atoi(argv[8]);
    log_max = atoll(argv[9]);
    log_files = atoi(argv[10]) > 0 ? atoi(argv[10]) : 1;
    int listen_fd = atoi(argv[11]);
    notify_fd = atoi(argv[12]);
    char **exit_cmd = (argc > 14 && strcmp(argv[13], "--") == 0) ? &argv[14] : NULL;
    if (attach) { term_out = 1; term_err = 2; }
    if (attach & 2) term_in = 0;

    log_path = argv[3];
    log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (log_fd >= 0) {
        struct stat st;
        if (fstat(log_fd, &st) == 0) log_size = st.st_size;
        char b[48];  /* a restarted container's log goes on with its number */
        ssize_t n = fgetxattr(log_fd, "user.minibox.seq", b, sizeof b - 1);
        if (n > 0) {
            b[n] = 0;
            log_seq = strtoul(b, NULL, 10);
        } else {
            log_label();
        }
    }

    /* The CLI forwards Ctrl-C to the container; the shim itself must survive it. */
    signal(SIGINT, SIG_IGN);
    signal(SIGQUIT, SIG_IGN);
    signal(SIGTSTP, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGWINCH);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

    int master = -1;
    int stdin_open = console_sock >= 0 || in_fd >= 0; /* the container's stdin: a pty, or a pipe (-i) */
    int status = 0, exited = 0;

    /* PID 1 may have died before SIGCHLD was blocked, and that signal is then lost. */
    if (waitpid(child, &status, WNOHANG) == child) exited = 1;
    int held = 0; /* a Ctrl-P waiting for its Ctrl-Q */
    while (!exited) {
        struct pollfd p[6];
        int n = 0, i_sig = -1, i_out = -1, i_err = -1, i_con = -1, i_in = -1, i_lis = -1;
        p[n] = (struct pollfd){sfd, POLLIN, 0}; i_sig = n++;
        if (fds[0] >= 0) { p[n] = (struct pollfd){fds[0], POLLIN, 0}; i_out = n++; }
        if (fds[1] >= 0) { p[n] = (struct pollfd){fds[1], POLLIN, 0}; i_err = n++; }
        if (console_sock >= 0 && master < 0) { p[n] = (struct pollfd){console_sock, POLLIN, 0}; i_con = n++; }
        if (master >= 0) { p[n] = (struct pollfd){master, POLLIN, 0}; i_out = n++; }
        /* a client's socket is read even with nothing to feed: its EOF is its leaving */
        if (term_in >= 0 && (client >= 0 || ((master >= 0 || in_fd >= 0) && stdin_open))) {
            p[n] = (struct pollfd){term_in, POLLIN, 0}; i_in = n++;
        }
        if (listen_fd >= 0 && term_out < 0) { p[n] = (struct pollfd){listen_fd, POLLIN, 0}; i_lis = n++; }
        if (poll(p, (nfds_t)n, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (i_con >= 0 && p[i_con].revents) {
            master = recv_fd(console_sock);
            close(console_sock);
            console_sock = -1;
            if (master >= 0 && attach) copy_winsize(master);
        }
        if (i_out >= 0 && p[i_out].revents) {
            int fd = master >= 0 ? master : fds[0];
            if (!pump(fd, 0)) {
                if (fd == master) { close(master); master = -2; stdin_open = 0; }
                else { close(fds[0]); fds[0] = -1; }
            }
        }
        if (i_err >= 0 && p[i_err].revents && !pump(fds[1], 1)) { close(fds[1]); fds[1] = -1; }
        if (i_in >= 0 && p[i_in].revents) {
            char buf[BUF];
            ssize_t r = read(term_in, buf, sizeof buf);
            if (r > 0 && master >= 0) {
                if (to_pty(master, buf, (size_t)r, &held)) let_go();
            } else if (r > 0 && in_fd >= 0 && stdin_open) {
                write_all(in_fd, buf, (size_t)r);
            } else if (r <= 0 && client >= 0) {
                let_go(); /* the attach client left; the container's stdin stays open */
            } else if (r <= 0) {
                stdin_open = 0;
                term_in = -1;
                if (in_fd >= 0) { close(in_fd); in_fd = -1; } /* EOF for the container */
            }
        }
        if (i_lis >= 0 && p[i_lis].revents) {
            int c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
            if (c >= 0) { client = term_in = term_out = term_err = c; held = 0; }
        }
        if (p[i_sig].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == sizeof si) {
                if (si.ssi_signo == SIGWINCH) copy_winsize(master);
            }
            pid_t w;
            while ((w = waitpid(-1, &status, WNOHANG)) > 0) {
                if (w == child) exited = 1;
            }
            if (w < 0 && errno == ECHILD) exited = 1; /* nothing left to wait for */
        }
    }

    /* PID 1 is gone, so the kernel killed the rest of its namespace: the writers are closed
       (or closing); read what they left behind without blocking on a stuck one. */
    for (int round = 0; round < 200; round++) {
        struct pollfd p[2];
        int n = 0;
        int fd0 = master >= 0 ? master : fds[0];
        if (fd0 >= 0) p[n++] = (struct pollfd){fd0, POLLIN, 0};
        if (fds[1] >= 0) p[n++] = (struct pollfd){fds[1], POLLIN, 0};
        if (n == 0 || poll(p, (nfds_t)n, 10) <= 0) break;
        for (int i = 0; i < n; i++) {
            if (!p[i].revents) continue;
            int stream = p[i].fd == fds[1];
            if (!pump(p[i].fd, stream)) {
                if (p[i].fd == master) master = -2;
                else if (p[i].fd == fds[0]) fds[0] = -1;
                else fds[1] = -1;
                close(p[i].fd);
            }
        }
    }

    int code, sig = 0;
    if (WIFEXITED(status)) code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status)) { sig = WTERMSIG(status); code = 128 + sig; }
    else code = 255;
    /* Drained: let go of the published ports' sockets and the log before saying it ended, so
       whoever reads exit.json (a `start` or a restart policy) can bind those ports again. */
    syscall(SYS_close_range, 3U, ~0U, 0U);
    write_exit_file(exit_file, code, sig);
    if (exit_cmd && (!attach || detached_once)) run_exit_command(exit_cmd);
    return code;
}
