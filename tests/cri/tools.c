/*
 * The programs critest's images hold, built here (static, one file, chosen by the name it is
 * run as), so the CRI gate needs no image from the internet:
 *
 *   pause        registry.k8s.io/pause: sleep until SIGINT or SIGTERM, reaping children
 *   nginx        e2e-test-images/nginx and hostnet-nginx: answers every HTTP request with
 *                200 on $NGINX_PORT (80), writes /var/run/nginx.pid, and runs as
 *                "nginx: master process ..." (what the PID-namespace specs grep for)
 *   nnp          e2e-test-images/nonewprivs: installed setuid root, prints "Effective uid: N"
 *   pgrep NAME   PIDs whose comm is NAME (busybox-static has no pgrep)
 *   ipcs -m      the System V shared memory segments, from /proc/sysvipc/shm (nor ipcs)
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {}
}

static void leave(int sig) {
    (void)sig;
    _exit(0);
}

static int pause_main(void) {
    signal(SIGINT, leave);
    signal(SIGTERM, leave);
    signal(SIGCHLD, reap);
    for (;;) pause();
}

static int nginx_main(int argc, char **argv) {
    if (!strstr(argv[0], "master process")) {
        char *again[] = {"nginx: master process nginx -g daemon off;", NULL};
        execv("/proc/self/exe", again);
        return 1;
    }
    (void)argc;
    signal(SIGTERM, leave);
    signal(SIGQUIT, leave);
    signal(SIGINT, leave);
    const char *port = getenv("NGINX_PORT");
    FILE *f = fopen("/var/run/nginx.pid", "w");
    if (f) { fprintf(f, "%d\n", getpid()); fclose(f); }
    int s = socket(AF_INET6, SOCK_STREAM, 0), on = 1, off = 0;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port ? atoi(port) : 80)};
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 64)) { perror("nginx: bind"); return 1; }
    static const char page[] = "<html><body><h1>Welcome to nginx!</h1></body></html>\n";
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0) continue;
        char buf[4096];
        if (read(c, buf, sizeof buf) > 0) {
            dprintf(c, "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/html\r\nContent-Length: %zu\r\n"
                       "Connection: close\r\n\r\n%s", sizeof page - 1, page);
        }
        close(c);
    }
}

static int pgrep_main(int argc, char **argv) {
    if (argc < 2) return 2;
    int found = 1;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[300], comm[64] = "";
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fgets(comm, sizeof comm, f)) comm[strcspn(comm, "\n")] = 0;
        fclose(f);
        if (strcmp(comm, argv[1]) == 0) { printf("%s\n", e->d_name); found = 0; }
    }
    return found;
}

static int ipcs_main(void) {
    FILE *f = fopen("/proc/sysvipc/shm", "r");
    char line[512];
    printf("\n------ Shared Memory Segments --------\nkey        shmid      owner      perms      bytes      nattch\n");
    if (f && fgets(line, sizeof line, f)) {
        unsigned long key, id, perms, size, nattch;
        unsigned uid;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "%lu %lu %lo %lu %*d %*d %lu %u", &key, &id, &perms, &size, &nattch, &uid) == 6)
                printf("0x%08lx %-10lu %-10u %-10lo %-10lu %lu\n", key, id, uid, perms, size, nattch);
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    if (strstr(argv[0], "nginx")) return nginx_main(argc, argv);
    if (!strcmp(name, "pause")) return pause_main();
    if (!strcmp(name, "nnp")) { printf("Effective uid: %d\n", geteuid()); return 0; }
    if (!strcmp(name, "pgrep")) return pgrep_main(argc, argv);
    if (!strcmp(name, "ipcs")) return ipcs_main();
    fprintf(stderr, "tools: run as pause, nginx, nnp, pgrep or ipcs\n");
    return 2;
}
