/* knserve's port map for replicas on the local plane, loaded with LD_PRELOAD.
 *
 * In a pod every container has its own network, so a server may bind any fixed port (KServe's
 * model server: HTTP on 8080, gRPC on [::]:8081; MLServer: 8080, 9000, 8082). On the local plane
 * every replica shares loopback with the others and with the plane itself, so this wrapper of
 * bind() applies the mapping the plane gives in KNSERVE_PORT_MAP ("DECLARED=REAL,keep=LO-HI"):
 *
 *   - the container's declared port (DECLARED) becomes the replica's own port (REAL, its $PORT);
 *   - a port in LO-HI (the kernel's ephemeral range: $PORT itself, or a port the process got by
 *     binding port 0) and port 0 stay as they are;
 *   - any other fixed port becomes port 0, so the kernel picks a free one;
 *   - every address that is not loopback becomes loopback (the plane serves on loopback only).
 *
 * In a pod, a client also reaches another service by its cluster DNS name on port 80, as KServe's
 * predictor client does ("http://{isvc}-predictor.{namespace}"). Such a client may give its HTTP
 * library a transport of its own and so ignore HTTP_PROXY, so with KNSERVE_GATEWAY ("DOMAIN=PORT",
 * the plane's route domain and its gateway's port on 127.0.0.1) getaddrinfo() answers names under
 * DOMAIN with loopback (as RFC 6761 has every *.localhost name do), and connect() to loopback
 * port 80 reaches the gateway, which routes by the Host header as Knative's ingress does.
 *
 * The rule is knserve.knative.supervisor.port_map.PortMap.target; without the variable (or with
 * one it cannot read) bind() is untouched. Each bind the map changes is reported on stderr, the
 * replica's log, with the port it really got.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netdb.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

struct port_map {
    unsigned declared, real, low, high;
};

static int read_map(struct port_map *map) {
    /* getenv on every bind: a process forked from a warm template sets its environment late */
    const char *text = getenv("KNSERVE_PORT_MAP");
    char end;
    return text != NULL &&
           sscanf(text, "%u=%u,keep=%u-%u%c", &map->declared, &map->real, &map->low, &map->high,
                  &end) == 4;
}

static unsigned target(const struct port_map *map, unsigned port) {
    if (port == 0)
        return 0;
    if (port == map->declared)
        return map->real;
    if (port >= map->low && port <= map->high)
        return port;
    return 0;
}

static void report(int fd, const struct sockaddr *asked, int rc) {
    char from[INET6_ADDRSTRLEN] = "?", to[INET6_ADDRSTRLEN] = "?", line[200];
    struct sockaddr_storage got;
    struct stat st;
    socklen_t len = sizeof got;
    unsigned from_port, to_port = 0;
    const void *from_addr, *to_addr = NULL;
    int saved = errno;

    if (asked->sa_family == AF_INET) {
        from_addr = &((const struct sockaddr_in *)asked)->sin_addr;
        from_port = ntohs(((const struct sockaddr_in *)asked)->sin_port);
    } else {
        from_addr = &((const struct sockaddr_in6 *)asked)->sin6_addr;
        from_port = ntohs(((const struct sockaddr_in6 *)asked)->sin6_port);
    }
    inet_ntop(asked->sa_family, from_addr, from, sizeof from);
    if (rc == 0 && getsockname(fd, (struct sockaddr *)&got, &len) == 0) {
        if (got.ss_family == AF_INET) {
            to_addr = &((struct sockaddr_in *)&got)->sin_addr;
            to_port = ntohs(((struct sockaddr_in *)&got)->sin_port);
        } else {
            to_addr = &((struct sockaddr_in6 *)&got)->sin6_addr;
            to_port = ntohs(((struct sockaddr_in6 *)&got)->sin6_port);
        }
        inet_ntop(got.ss_family, to_addr, to, sizeof to);
        snprintf(line, sizeof line, "knserve port map: bind %s port %u -> %s port %u\n", from,
                 from_port, to, to_port);
    } else {
        snprintf(line, sizeof line, "knserve port map: bind %s port %u failed: %s\n", from,
                 from_port, strerror(saved));
    }
    /* a daemon may have closed stderr and reused descriptor 2 for a connection: say nothing */
    if (fstat(2, &st) == 0 && !S_ISSOCK(st.st_mode) && write(2, line, strlen(line)) < 0) {
        /* nowhere to say it */
    }
    errno = saved;
}

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static bind_fn next_bind;
    struct port_map map;
    int rc;

    if (next_bind == NULL)
        next_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");
    if (addr == NULL || !read_map(&map))
        return next_bind(fd, addr, len);

    if (addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in in;
        unsigned port;
        memcpy(&in, addr, sizeof in);
        port = ntohs(in.sin_port);
        in.sin_port = htons(target(&map, port));
        if ((ntohl(in.sin_addr.s_addr) >> 24) != 127)
            in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (in.sin_port == htons(port) &&
            in.sin_addr.s_addr == ((const struct sockaddr_in *)addr)->sin_addr.s_addr)
            return next_bind(fd, addr, len);
        rc = next_bind(fd, (const struct sockaddr *)&in, sizeof in);
        report(fd, addr, rc);
        return rc;
    }

    if (addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 in6;
        const struct in6_addr *asked = &((const struct sockaddr_in6 *)addr)->sin6_addr;
        int loopback = IN6_IS_ADDR_LOOPBACK(asked) ||
                       (IN6_IS_ADDR_V4MAPPED(asked) && asked->s6_addr[12] == 127);
        unsigned port;
        memcpy(&in6, addr, sizeof in6);
        port = ntohs(in6.sin6_port);
        in6.sin6_port = htons(target(&map, port));
        if (loopback && in6.sin6_port == htons(port))
            return next_bind(fd, addr, len);
        if (!loopback) {
            int v6only = 1;
            socklen_t size = sizeof v6only;
            in6.sin6_scope_id = 0;
            /* a dual-stack socket (v6only off, as [::] servers such as gRPC's ask for) answers the
             * IPv4 loopback the gateway dials; fall back to ::1 when that is taken */
            if (getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &size) == 0 && !v6only) {
                static const unsigned char mapped[16] = {0, 0, 0, 0, 0, 0,   0, 0,
                                                         0, 0, 0xff, 0xff, 127, 0, 0, 1};
                memcpy(&in6.sin6_addr, mapped, sizeof mapped);
                rc = next_bind(fd, (const struct sockaddr *)&in6, sizeof in6);
                if (rc == 0 || errno != EADDRINUSE) {
                    report(fd, addr, rc);
                    return rc;
                }
            }
            in6.sin6_addr = in6addr_loopback;
        }
        rc = next_bind(fd, (const struct sockaddr *)&in6, sizeof in6);
        report(fd, addr, rc);
        return rc;
    }
    return next_bind(fd, addr, len);
}

/* KNSERVE_GATEWAY "DOMAIN=PORT": the route domain whose names are the gateway's, and its port */
static int read_gateway(char *domain, size_t size, unsigned *port) {
    const char *text = getenv("KNSERVE_GATEWAY");
    const char *eq = text ? strrchr(text, '=') : NULL;
    char end;
    if (eq == NULL || (size_t)(eq - text) >= size || eq == text)
        return 0;
    memcpy(domain, text, eq - text);
    domain[eq - text] = '\0';
    return sscanf(eq + 1, "%u%c", port, &end) == 1 && *port > 0 && *port < 65536;
}

static int under_domain(const char *node, const char *domain) {
    size_t n = strlen(node), d = strlen(domain);
    if (n > 0 && node[n - 1] == '.')
        n--; /* a fully qualified name */
    return n > d + 1 && node[n - d - 1] == '.' && strncasecmp(node + n - d, domain, d) == 0;
}

typedef int (*getaddrinfo_fn)(const char *, const char *, const struct addrinfo *,
                              struct addrinfo **);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res) {
    static getaddrinfo_fn next_getaddrinfo;
    char domain[256];
    unsigned port;

    if (next_getaddrinfo == NULL)
        next_getaddrinfo = (getaddrinfo_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    if (node != NULL && read_gateway(domain, sizeof domain, &port) && under_domain(node, domain)) {
        struct addrinfo ipv4;
        if (hints != NULL)
            ipv4 = *hints;
        else
            memset(&ipv4, 0, sizeof ipv4);
        ipv4.ai_family = AF_INET; /* the gateway listens on 127.0.0.1 */
        ipv4.ai_flags &= ~AI_CANONNAME;
        return next_getaddrinfo("127.0.0.1", service, &ipv4, res);
    }
    return next_getaddrinfo(node, service, hints, res);
}

typedef int (*connect_fn)(int, const struct sockaddr *, socklen_t);

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    static connect_fn next_connect;
    char domain[256];
    unsigned port;

    if (next_connect == NULL)
        next_connect = (connect_fn)dlsym(RTLD_NEXT, "connect");
    if (addr != NULL && addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in) &&
        ((const struct sockaddr_in *)addr)->sin_port == htons(80) &&
        ((const struct sockaddr_in *)addr)->sin_addr.s_addr == htonl(INADDR_LOOPBACK) &&
        read_gateway(domain, sizeof domain, &port)) {
        struct sockaddr_in in;
        memcpy(&in, addr, sizeof in);
        in.sin_port = htons(port);
        return next_connect(fd, (const struct sockaddr *)&in, sizeof in);
    }
    return next_connect(fd, addr, len);
}
