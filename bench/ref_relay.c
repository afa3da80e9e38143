/* A bare RTP relay in C for bench/media_bench.py's reference run (not part of the gateway).
 *
 * It inherits bound, non-blocking UDP sockets from the Python side and reads its routes from stdin, one
 * per line: "in_fd out_fd dest_port table" (table 0: payload unchanged, 1: PCMU->PCMA, 2: PCMA->PCMU; the
 * two 256-byte tables come first, on one line of 1024 hex digits).  Then it relays every datagram read on
 * in_fd to 127.0.0.1:dest_port through out_fd with one epoll.  Each later line on stdin is a mark: at the
 * first two ("go", "sent") it prints its CPU seconds so far, at the third ("stop") how many datagrams it
 * relayed, and exits.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct route { int out_fd; struct sockaddr_in dest; int table; };

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

int main(void)
{
    static struct route routes[65536];
    static unsigned char tables[3][256];
    char hex[1100] = {0};
    size_t got = 0;
    while (got < 1024 && read(0, hex + got, 1) == 1)
        got++;
    if (got < 1024 || read(0, hex + got, 1) != 1)  /* and its newline */
        return 2;
    for (int t = 1; t <= 2; t++)
        for (int i = 0; i < 256; i++) {
            unsigned v;
            sscanf(hex + 2 * (256 * (t - 1) + i), "%2x", &v);
            tables[t][i] = (unsigned char)v;
        }
    int ep = epoll_create1(0);
    char line[128];
    /* The routes are read unbuffered, a byte at a time, so that nothing after "end" sits in stdio's buffer
     * where epoll would never see it. */
    for (;;) {
        size_t k = 0;
        while (k + 1 < sizeof line && read(0, line + k, 1) == 1 && line[k] != '\n')
            k++;
        line[k] = 0;
        if (k == 0 || strncmp(line, "end", 3) == 0)
            break;
        int in_fd, out_fd, port, table;
        if (sscanf(line, "%d %d %d %d", &in_fd, &out_fd, &port, &table) != 4 || in_fd < 0 || in_fd >= 65536)
            return 2;
        routes[in_fd].out_fd = out_fd;
        routes[in_fd].table = table;
        routes[in_fd].dest.sin_family = AF_INET;
        routes[in_fd].dest.sin_port = htons((unsigned short)port);
        routes[in_fd].dest.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = in_fd};
        epoll_ctl(ep, EPOLL_CTL_ADD, in_fd, &ev);
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = 0};
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
    printf("ready\n");
    fflush(stdout);
    unsigned long long relayed = 0;
    int marks = 0;
    unsigned char buf[2048];
    struct epoll_event events[256];
    while (marks < 3) {
        int n = epoll_wait(ep, events, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == 0) {
                ssize_t got = read(0, line, sizeof line);
                if (got <= 0)
                    marks = 3;
                for (ssize_t k = 0; k < got; k++)
                    if (line[k] == '\n' && ++marks < 3) {
                        printf("%f\n", cpu_seconds());
                        fflush(stdout);
                    }
                continue;
            }
            struct route *r = &routes[fd];
            for (;;) {
                ssize_t len = recv(fd, buf, sizeof buf, 0);
                if (len < 0)
                    break;
                if (r->table)
                    for (ssize_t k = 12; k < len; k++)
                        buf[k] = tables[r->table][buf[k]];
                sendto(r->out_fd, buf, (size_t)len, 0, (struct sockaddr *)&r->dest, sizeof r->dest);
                relayed++;
            }
        }
    }
    printf("%llu\n", relayed);
    return 0;
}
