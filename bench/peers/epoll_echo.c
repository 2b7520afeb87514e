/* epoll_echo.c - raw edge-triggered epoll echo server: the floor.
 *
 * Usage: epoll_echo --port N
 *
 * One thread, one epoll instance, non-blocking sockets registered once with
 * EPOLLIN|EPOLLRDHUP|EPOLLET.  Every byte that arrives is written back.  If a
 * write is short the remainder is kept per connection, EPOLLOUT is added and
 * reading stops for that connection until the backlog drains (backpressure).
 *
 * Edge-triggered reading normally loops until EAGAIN.  A read that returns
 * fewer bytes than asked for proves the receive queue was empty at that
 * moment, and any later arrival raises a fresh edge, so the loop stops there
 * and saves the extra read() that would only return EAGAIN.
 *
 * Runs until killed (SIGTERM/SIGINT default action).  Prints nothing per
 * message.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE 65536
#define MAX_EVENTS 512

struct conn {
  char* pending; /* unsent bytes (NULL when none) */
  size_t pending_len;
  size_t pending_off;
  int want_out; /* EPOLLOUT currently registered */
};

static struct conn* conns;
static size_t nconns;
static int epfd;
static char buf[BUF_SIZE];

static void die(const char* what) {
  perror(what);
  exit(1);
}

static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static struct conn* conn_of(int fd) {
  if ((size_t)fd >= nconns) {
    size_t n = nconns ? nconns : 1024;
    while (n <= (size_t)fd) n *= 2;
    struct conn* c = realloc(conns, n * sizeof *c);
    if (!c) die("realloc");
    memset(c + nconns, 0, (n - nconns) * sizeof *c);
    conns = c;
    nconns = n;
  }
  return &conns[fd];
}

static void close_conn(int fd) {
  struct conn* c = conn_of(fd);
  free(c->pending);
  memset(c, 0, sizeof *c);
  close(fd); /* also removes it from the epoll set */
}

static void set_out(int fd, struct conn* c, int on) {
  if (c->want_out == on) return;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET | (on ? EPOLLOUT : 0),
                           .data.fd = fd};
  if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) < 0) die("epoll_ctl MOD");
  c->want_out = on;
}

/* Write [p, p+n) to fd; keep what does not fit.  Returns -1 on fatal error. */
static int write_all(int fd, struct conn* c, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
    } else if (w < 0 && errno == EINTR) {
      continue;
    } else if (w < 0 && errno == EAGAIN) {
      char* q = malloc(n);
      if (!q) die("malloc");
      memcpy(q, p, n);
      c->pending = q;
      c->pending_len = n;
      c->pending_off = 0;
      set_out(fd, c, 1);
      return 0;
    } else {
      return -1;
    }
  }
  return 0;
}

/* Drain the backlog; returns 1 when empty, 0 when still blocked, -1 on error. */
static int flush_pending(int fd, struct conn* c) {
  while (c->pending_off < c->pending_len) {
    ssize_t w =
        send(fd, c->pending + c->pending_off, c->pending_len - c->pending_off, MSG_NOSIGNAL);
    if (w > 0) {
      c->pending_off += (size_t)w;
    } else if (w < 0 && errno == EINTR) {
      continue;
    } else if (w < 0 && errno == EAGAIN) {
      return 0;
    } else {
      return -1;
    }
  }
  free(c->pending);
  c->pending = NULL;
  c->pending_len = c->pending_off = 0;
  set_out(fd, c, 0);
  return 1;
}

/* Read and echo until the receive queue is empty.  Returns -1 to close.
 * After a hang-up edge no further edge will come, so read to EOF/EAGAIN. */
static int on_readable(int fd, struct conn* c, int hup) {
  for (;;) {
    if (c->pending) return 0; /* backpressure: resume on EPOLLOUT */
    ssize_t r = read(fd, buf, sizeof buf);
    if (r > 0) {
      if (write_all(fd, c, buf, (size_t)r) < 0) return -1;
      if (!hup && (size_t)r < sizeof buf) return 0; /* queue drained */
    } else if (r == 0) {
      return -1;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN) {
      return 0;
    } else {
      return -1;
    }
  }
}

static void on_accept(int lfd) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN) return;
      if (errno == EMFILE || errno == ENFILE) {
        perror("accept4");
        return;
      }
      die("accept4");
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn* c = conn_of(fd);
    memset(c, 0, sizeof *c);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.fd = fd};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl ADD");
    /* Data may already be queued; the ADD reports it as the first edge. */
  }
}

static int parse_port(int argc, char** argv) {
  int port = -1;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
      port = atoi(argv[++i]);
    } else {
      fprintf(stderr, "usage: %s --port N\n", argv[0]);
      exit(2);
    }
  }
  if (port < 0 || port > 65535) {
    fprintf(stderr, "usage: %s --port N\n", argv[0]);
    exit(2);
  }
  return port;
}

int main(int argc, char** argv) {
  int port = parse_port(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  raise_nofile();

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (lfd < 0) die("socket");
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_ANY)};
  if (bind(lfd, (struct sockaddr*)&addr, sizeof addr) < 0) die("bind");
  if (listen(lfd, SOMAXCONN) < 0) die("listen");

  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) die("epoll_create1");
  struct epoll_event lev = {.events = EPOLLIN | EPOLLET, .data.fd = lfd};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) < 0) die("epoll_ctl listen");

  struct epoll_event evs[MAX_EVENTS];
  for (;;) {
    int n = epoll_wait(epfd, evs, MAX_EVENTS, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      uint32_t e = evs[i].events;
      if (fd == lfd) {
        on_accept(lfd);
        continue;
      }
      struct conn* c = conn_of(fd);
      int rc = 0;
      int drain = (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
      if (e & EPOLLOUT && c->pending) {
        rc = flush_pending(fd, c);
        /* Backlog gone: resume reading what was left queued, to EAGAIN,
         * since edges seen while blocked were not acted upon. */
        if (rc > 0) rc = 0, e |= EPOLLIN, drain = 1;
      }
      if (rc == 0 && (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        rc = on_readable(fd, c, drain);
      if (rc < 0) close_conn(fd);
    }
  }
}
