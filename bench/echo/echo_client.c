/* echo_client.c - closed-loop epoll load generator for the echo benchmark.
 *
 * echo_client --host 127.0.0.1 --port N --conns C --seconds S --warmup W
 *             [--msg 64] [--cpu K]
 *
 * Opens C TCP connections; each keeps exactly one message of --msg bytes in
 * flight (send, wait for the same number of bytes back, send again).  Round
 * trip latencies are recorded in a log-linear histogram (about 3% resolution).
 * Only round trips completed inside the measured window, which starts W
 * seconds after start-up and lasts S seconds, are counted.
 *
 * On stdout, line-buffered:
 *   MEASURE_START        when the window opens
 *   MEASURE_END          when it closes
 *   {"conns":..,...}     one JSON line with the results
 * The harness samples the server's CPU time when it sees the two markers.
 * Diagnostics go to stderr.  Connections are closed with an abortive close
 * (SO_LINGER 0) so repeated runs do not pile up TIME_WAIT sockets.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- histogram: values in ns; exact below 64, then 32 sub-buckets per power of two */
#define SUB_BITS 5
#define SUB (1 << SUB_BITS)
#define LINEAR (2 * SUB)
#define MAX_MSB 46
#define NBUCKETS (LINEAR + (MAX_MSB - SUB_BITS) * SUB)

static uint64_t hist[NBUCKETS];

static int bucket_of(uint64_t v) {
  if (v < LINEAR) return (int)v;
  int msb = 63 - __builtin_clzll(v);
  if (msb > MAX_MSB) return NBUCKETS - 1;
  int shift = msb - SUB_BITS;
  int top = (int)(v >> shift) - SUB; /* 0..SUB-1 */
  return LINEAR + (msb - SUB_BITS - 1) * SUB + top;
}

/* midpoint of a bucket, in ns */
static double bucket_mid(int b) {
  if (b < LINEAR) return b;
  int k = b - LINEAR;
  int msb = k / SUB + SUB_BITS + 1;
  int top = k % SUB + SUB;
  int shift = msb - SUB_BITS;
  double lo = (double)((uint64_t)top << shift);
  return lo + (double)(1ULL << shift) / 2.0;
}

static double percentile_us(uint64_t total, double p) {
  if (total == 0) return 0.0;
  uint64_t rank = (uint64_t)ceil(p * (double)total);
  if (rank == 0) rank = 1;
  uint64_t acc = 0;
  for (int b = 0; b < NBUCKETS; b++) {
    acc += hist[b];
    if (acc >= rank) return bucket_mid(b) / 1000.0;
  }
  return bucket_mid(NBUCKETS - 1) / 1000.0;
}

/* ---- connections */
enum { ST_CONNECTING, ST_SENDING, ST_WAITING, ST_DEAD };

struct conn {
  int fd;
  int state;
  uint32_t sent;   /* bytes of the current message written */
  uint32_t got;    /* bytes of the echo received */
  uint64_t t_send; /* ns, when the message was first written */
};

static size_t msg_size = 64;
static char* msg_out;
static char* msg_in;
static int epfd;
static struct conn* conns;
static int nconns;
static int phase;     /* 0 warm-up, 1 measuring */
static uint64_t msgs; /* round trips completed in the window */
static uint64_t total_msgs;
static int errors;
static int connected;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void usage(const char* argv0) {
  fprintf(stderr,
          "usage: %s --host H --port N --conns C --seconds S --warmup W [--msg B] [--cpu K]\n",
          argv0);
  exit(2);
}

static void kill_conn(struct conn* c, const char* why, int err) {
  if (c->state == ST_DEAD) return;
  if (errors < 5)
    fprintf(stderr, "echo_client: conn fd %d: %s: %s\n", c->fd, why,
            err ? strerror(err) : "peer closed");
  errors++;
  close(c->fd);
  c->state = ST_DEAD;
}

static void set_events(struct conn* c, uint32_t ev) {
  struct epoll_event e = {.events = ev, .data.ptr = c};
  if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e) < 0) kill_conn(c, "epoll_ctl", errno);
}

/* Write the rest of the current message; switch to EPOLLOUT when blocked. */
static void do_send(struct conn* c, int from_epollout) {
  while (c->sent < msg_size) {
    ssize_t w = send(c->fd, msg_out + c->sent, msg_size - c->sent, MSG_NOSIGNAL);
    if (w > 0) {
      c->sent += (uint32_t)w;
    } else if (w < 0 && errno == EINTR) {
      continue;
    } else if (w < 0 && errno == EAGAIN) {
      if (!from_epollout) set_events(c, EPOLLIN | EPOLLOUT);
      c->state = ST_SENDING;
      return;
    } else {
      kill_conn(c, "send", w < 0 ? errno : 0);
      return;
    }
  }
  if (from_epollout) set_events(c, EPOLLIN);
  c->state = ST_WAITING;
}

static void start_message(struct conn* c, uint64_t now) {
  c->sent = 0;
  c->got = 0;
  c->t_send = now;
  do_send(c, 0);
}

static void on_readable(struct conn* c) {
  for (;;) {
    ssize_t r = read(c->fd, msg_in, msg_size - c->got);
    if (r > 0) {
      if (c->state != ST_WAITING && c->state != ST_SENDING) {
        kill_conn(c, "unexpected data", 0);
        return;
      }
      c->got += (uint32_t)r;
      if (c->got > c->sent) {
        kill_conn(c, "received more than sent", 0);
        return;
      }
      if (c->got == msg_size) {
        uint64_t t = now_ns();
        total_msgs++;
        if (phase == 1) {
          msgs++;
          hist[bucket_of(t - c->t_send)]++;
        }
        start_message(c, t);
        return; /* one message in flight: nothing else can be queued */
      }
    } else if (r == 0) {
      kill_conn(c, "read", 0);
      return;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN) {
      return;
    } else {
      kill_conn(c, "read", errno);
      return;
    }
  }
}

static void on_connected(struct conn* c) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
  if (err) {
    kill_conn(c, "connect", err);
    return;
  }
  connected++;
  set_events(c, EPOLLIN);
  if (c->state != ST_DEAD) start_message(c, now_ns());
}

static double cpu_s(const struct rusage* r) {
  return (double)r->ru_utime.tv_sec + r->ru_utime.tv_usec / 1e6 + (double)r->ru_stime.tv_sec +
         r->ru_stime.tv_usec / 1e6;
}

int main(int argc, char** argv) {
  const char* host = "127.0.0.1";
  int port = -1, cpu = -1;
  double seconds = 3.0, warmup = 1.0;
  nconns = 1;
  for (int i = 1; i < argc; i++) {
    const char* a = argv[i];
    if (i + 1 >= argc) usage(argv[0]);
    const char* v = argv[++i];
    if (!strcmp(a, "--host"))
      host = v;
    else if (!strcmp(a, "--port"))
      port = atoi(v);
    else if (!strcmp(a, "--conns"))
      nconns = atoi(v);
    else if (!strcmp(a, "--seconds"))
      seconds = atof(v);
    else if (!strcmp(a, "--warmup"))
      warmup = atof(v);
    else if (!strcmp(a, "--msg"))
      msg_size = (size_t)atol(v);
    else if (!strcmp(a, "--cpu"))
      cpu = atoi(v);
    else
      usage(argv[0]);
  }
  if (port <= 0 || port > 65535 || nconns <= 0 || seconds <= 0 || warmup < 0 || msg_size == 0 ||
      msg_size > (1u << 20))
    usage(argv[0]);

  setvbuf(stdout, NULL, _IOLBF, 0);
  signal(SIGPIPE, SIG_IGN);

  if (cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0) {
      perror("sched_setaffinity");
      return 1;
    }
  }

  /* File descriptors: one per connection plus a few spare. */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rlim_t need = (rlim_t)nconns + 64;
    if (rl.rlim_cur < need) {
      rl.rlim_cur = need;
      if (rl.rlim_max < need) rl.rlim_max = need; /* works as root */
      if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
        perror("setrlimit(RLIMIT_NOFILE)");
        return 1;
      }
    }
  }

  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, NULL, &hints, &res) != 0) {
      fprintf(stderr, "echo_client: cannot resolve %s\n", host);
      return 1;
    }
    addr.sin_addr = ((struct sockaddr_in*)res->ai_addr)->sin_addr;
    freeaddrinfo(res);
  }

  msg_out = malloc(msg_size);
  msg_in = malloc(msg_size);
  conns = calloc((size_t)nconns, sizeof *conns);
  if (!msg_out || !msg_in || !conns) {
    perror("malloc");
    return 1;
  }
  for (size_t i = 0; i < msg_size; i++) msg_out[i] = (char)('a' + i % 26);

  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) {
    perror("epoll_create1");
    return 1;
  }

  uint64_t t_start = now_ns();
  uint64_t t_win = t_start + (uint64_t)(warmup * 1e9);
  uint64_t t_end = t_win + (uint64_t)(seconds * 1e9);

  for (int i = 0; i < nconns; i++) {
    struct conn* c = &conns[i];
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
      perror("socket");
      return 1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->state = ST_CONNECTING;
    struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &e) < 0) {
      perror("epoll_ctl");
      return 1;
    }
    if (connect(c->fd, (struct sockaddr*)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
      kill_conn(c, "connect", errno);
    }
  }

  struct rusage ru0 = {0}, ru1 = {0};
  uint64_t w0 = 0, w1 = 0;
  int max_events = nconns < 1024 ? nconns + 1 : 1024;
  struct epoll_event* evs = calloc((size_t)max_events, sizeof *evs);

  for (;;) {
    uint64_t now = now_ns();
    if (phase == 0 && now >= t_win) {
      getrusage(RUSAGE_SELF, &ru0);
      w0 = now_ns();
      phase = 1;
      msgs = 0;
      memset(hist, 0, sizeof hist);
      fputs("MEASURE_START\n", stdout);
    }
    if (phase == 1 && now >= t_end) {
      w1 = now_ns();
      getrusage(RUSAGE_SELF, &ru1);
      fputs("MEASURE_END\n", stdout);
      break;
    }
    uint64_t next = phase == 0 ? t_win : t_end;
    int timeout_ms = (int)((next - now + 999999) / 1000000);
    int n = epoll_wait(epfd, evs, max_events, timeout_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; i++) {
      struct conn* c = evs[i].data.ptr;
      uint32_t e = evs[i].events;
      if (c->state == ST_DEAD) continue;
      if (c->state == ST_CONNECTING) {
        on_connected(c);
        continue;
      }
      if (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
      if (c->state == ST_SENDING && (e & EPOLLOUT)) do_send(c, 1);
    }
  }

  double window = (double)(w1 - w0) / 1e9;
  double ccpu = cpu_s(&ru1) - cpu_s(&ru0);
  printf(
      "{\"conns\":%d,\"connected\":%d,\"errors\":%d,\"msg\":%zu,\"window_s\":%.6f,"
      "\"msgs\":%llu,\"msgs_per_s\":%.1f,\"p50_us\":%.2f,\"p99_us\":%.2f,"
      "\"p999_us\":%.2f,\"client_cpu_pct\":%.1f,\"total_msgs\":%llu}\n",
      nconns, connected, errors, msg_size, window, (unsigned long long)msgs,
      window > 0 ? (double)msgs / window : 0.0, percentile_us(msgs, 0.50),
      percentile_us(msgs, 0.99), percentile_us(msgs, 0.999),
      window > 0 ? 100.0 * ccpu / window : 0.0, (unsigned long long)total_msgs);

  /* Abortive close: no TIME_WAIT left behind on either side. */
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  for (int i = 0; i < nconns; i++) {
    if (conns[i].state == ST_DEAD) continue;
    setsockopt(conns[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(conns[i].fd);
  }
  return errors ? 3 : 0;
}
