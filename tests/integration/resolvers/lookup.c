/* getaddrinfo(argv[1]) through the C library it is linked with (musl, in tests/integration/test_dns.py): one address per line; exit 2 if the name is not found. */
#include <netdb.h>
#include <stdio.h>
#include <arpa/inet.h>
#include <sys/socket.h>
int main(int argc, char **argv) {
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *p;
    int rc = getaddrinfo(argv[1], NULL, &hints, &res);
    if (rc) { fprintf(stderr, "%s: %s\n", argv[1], gai_strerror(rc)); return 2; }
    for (p = res; p; p = p->ai_next) {
        char buf[64];
        void *a = p->ai_family == AF_INET ? (void *)&((struct sockaddr_in *)p->ai_addr)->sin_addr
                                          : (void *)&((struct sockaddr_in6 *)p->ai_addr)->sin6_addr;
        printf("%s\n", inet_ntop(p->ai_family, a, buf, sizeof buf));
    }
    return 0;
}
