/* minibox-exec: the last step into a container's command, executed from a sealed memfd.
 *
 *     minibox-exec fN|lN PATH PREFIX ARG0 [ARG...]    execve(PATH, [ARG0, ARG...], environ)
 *
 * Why a program of its own (CVE-2019-5736): the process that turns into the container's
 * command has joined the container already. Were it minibox's own Python when it calls
 * execve, the container could open /proc/PID/exe (the host's python3) and write to that
 * file once it is no longer running: the next minibox command would run the container's
 * code on the host. So the caller makes itself non-dumpable while it is still Python (no
 * container process may open its /proc/PID/exe), copies this program into a memfd, seals
 * it (no write, no resize) and executes that: all a container can ever reach through
 * /proc/PID/exe is this sealed copy, never a file of the host. Static and without libc,
 * it needs nothing from the container's root, where it runs; it is 9 KB to copy.
 *
 * If execve fails, it says why on fd N and exits with CODE: 127 when the file or its
 * interpreter is missing, else 126, as Docker reports them. With fN (N: the caller's error
 * pipe, made close-on-exec again first, so that a successful execve closes it) it writes
 * the frame "CODE PREFIX: REASON" that minibox reads; with lN (N: stderr, left as it is,
 * where nobody waits on a pipe) the line "PREFIX: REASON".
 */

#define SYS_write 1
#define SYS_execve 59
#define SYS_fcntl 72
#define SYS_exit_group 231
#define F_SETFD 2
#define FD_CLOEXEC 1

static long sys3(long n, long a, long b, long c)
{
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}

static __attribute__((noreturn)) void leave(int code)
{
    for (;;)
        sys3(SYS_exit_group, code, 0, 0);
}

/* Not started by minibox: the kernel runs this copy again when a container's script names
 * /proc/self/exe as its interpreter. It does nothing but say so. */
static __attribute__((noreturn)) void refuse(void)
{
    static const char msg[] = "minibox-exec: not started by minibox (a script whose interpreter is "
                              "/proc/self/exe?): refused\n";
    sys3(SYS_write, 2, (long)msg, sizeof msg - 1);
    leave(125);
}

static const char *reason(long err)
{
    switch (err) {
    case 1: return "operation not permitted";
    case 2: return "no such file or directory";
    case 7: return "argument list too long";
    case 8: return "exec format error";
    case 12: return "cannot allocate memory";
    case 13: return "permission denied";
    case 20: return "not a directory";
    case 21: return "is a directory";
    case 26: return "text file busy";
    case 36: return "file name too long";
    case 40: return "too many levels of symbolic links";
    default: return "execve failed";
    }
}

static int put(char *buf, int at, int size, const char *s)
{
    while (*s && at < size)
        buf[at++] = *s++;
    return at;
}

__attribute__((noreturn, used)) void start_c(long *sp)
{
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    long fd = 0;
    const char *p;
    char msg[4096];
    int len, code;

    if (argc < 5 || (argv[1][0] != 'f' && argv[1][0] != 'l') || !argv[1][1])
        refuse();
    for (p = argv[1] + 1; *p; p++) {
        if (*p < '0' || *p > '9')
            refuse();
        fd = fd * 10 + (*p - '0');
    }
    if (argv[1][0] == 'f')
        sys3(SYS_fcntl, fd, F_SETFD, FD_CLOEXEC);  /* the error pipe: closed by a successful execve */
    long err = -sys3(SYS_execve, (long)argv[2], (long)(argv + 4), (long)envp);

    code = err == 2 ? 127 : 126;
    len = argv[1][0] == 'f' ? put(msg, 0, sizeof msg, code == 127 ? "127 " : "126 ") : 0;
    len = put(msg, len, sizeof msg, argv[3]);
    len = put(msg, len, sizeof msg, ": ");
    len = put(msg, len, sizeof msg, reason(err));
    if (argv[1][0] == 'l')
        len = put(msg, len, sizeof msg, "\n");
    sys3(SYS_write, fd, (long)msg, len);
    leave(code);
}

/* The kernel starts a program at _start with argc, argv and envp on the stack. */
__asm__(".text\n.globl _start\n_start:\n\txor %rbp, %rbp\n\tmov %rsp, %rdi\n\tand $-16, %rsp\n\tcall start_c\n");
