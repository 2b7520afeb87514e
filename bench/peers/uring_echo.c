/* uring_echo.c - raw io_uring echo server on liburing: the io_uring floor.
 *
 * Usage: uring_echo --port N [--uring-mode multishot|single] [--setup defer|coop|plain]
 *
 * --uring-mode multishot (default): one multishot accept, and per connection
 *   one multishot recv that takes its buffers from a provided buffer ring.
 *   Every received buffer is sent back as is and returned to the ring when the
 *   send completes.  Sends on one connection are issued one at a time, in
 *   order; buffers that arrive meanwhile wait in a per-connection queue.
 *   Falls back to "single" automatically if the kernel rejects the buffer
 *   ring, multishot accept (< 5.19) or multishot recv (< 6.0).
 * --uring-mode single: single-shot accept and recv into a per-connection
 *   buffer, re-armed after each completion (the naive io_uring shape).
 * --setup defer (default): IORING_SETUP_SINGLE_ISSUER|DEFER_TASKRUN, falling
 *   back to coop (IORING_SETUP_COOP_TASKRUN), then plain (no flags).
 *
 * One thread, no SQPOLL (it would cost a whole core).  Prints one line on
 * stderr describing the mode in use, nothing per message.  Runs until killed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define SQ_ENTRIES 4096
#define CQ_ENTRIES 16384
#define NBUF 4096 /* provided buffers, power of two */
#define BUF_SIZE 2048
#define BGID 1

enum { OP_ACCEPT = 1, OP_RECV = 2, OP_SEND = 3 };

struct conn {
  uint32_t gen;
  uint8_t open;
  uint8_t recv_armed;
  uint8_t send_busy;
  uint8_t eof;     /* no more input: close once the output is flushed */
  uint8_t starved; /* recv ended with -ENOBUFS, re-arm when buffers return */
  uint8_t recv_ms; /* the armed recv is multishot */
  int32_t qhead;   /* queued buffer ids waiting to be sent (multishot mode) */
  int32_t qtail;
  uint32_t send_off;
  uint32_t single_len;
  char* single_buf; /* single mode: the connection's one buffer */
  int32_t next_starved;
};

static struct io_uring ring;
static struct io_uring_buf_ring* br;
static char* buf_base;
static int32_t bid_next[NBUF];
static uint32_t bid_len[NBUF];
static unsigned bufs_returned;
static int multishot_accept = 1;
static int multishot_recv = 1;
static int accept_ok_seen;
static int recv_ok_seen;
static int listen_fd;
static struct conn* conns;
static size_t nconns;
static int32_t starved_head = -1;

static void die(const char* what, int err) {
  fprintf(stderr, "uring_echo: %s: %s\n", what, strerror(err));
  exit(1);
}

static struct conn* conn_of(int fd) {
  if ((size_t)fd >= nconns) {
    size_t n = nconns ? nconns : 1024;
    while (n <= (size_t)fd) n *= 2;
    struct conn* c = realloc(conns, n * sizeof *c);
    if (!c) die("realloc", ENOMEM);
    memset(c + nconns, 0, (n - nconns) * sizeof *c);
    conns = c;
    nconns = n;
  }
  return &conns[fd];
}

static uint64_t ud(int op, int fd, uint32_t gen) {
  return ((uint64_t)gen << 32) | ((uint64_t)(uint32_t)fd << 3) | (uint64_t)op;
}

static struct io_uring_sqe* sqe_get(void) {
  struct io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  while (!sqe) {
    int r = io_uring_submit(&ring);
    if (r < 0 && r != -EAGAIN && r != -EBUSY && r != -EINTR) die("io_uring_submit", -r);
    sqe = io_uring_get_sqe(&ring);
  }
  return sqe;
}

static void arm_accept(void) {
  struct io_uring_sqe* sqe = sqe_get();
  if (multishot_accept)
    io_uring_prep_multishot_accept(sqe, listen_fd, NULL, NULL, SOCK_CLOEXEC);
  else
    io_uring_prep_accept(sqe, listen_fd, NULL, NULL, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, ud(OP_ACCEPT, 0, 0));
}

static void arm_recv(int fd, struct conn* c) {
  struct io_uring_sqe* sqe = sqe_get();
  if (multishot_recv) {
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
  } else {
    if (!c->single_buf && !(c->single_buf = malloc(BUF_SIZE))) die("malloc", ENOMEM);
    io_uring_prep_recv(sqe, fd, c->single_buf, BUF_SIZE, 0);
  }
  io_uring_sqe_set_data64(sqe, ud(OP_RECV, fd, c->gen));
  c->recv_armed = 1;
  c->recv_ms = (uint8_t)multishot_recv;
}

static char* buf_addr(int bid) {
  return buf_base + (size_t)bid * BUF_SIZE;
}

static void buf_return(int bid) {
  io_uring_buf_ring_add(br, buf_addr(bid), BUF_SIZE, (unsigned short)bid,
                        io_uring_buf_ring_mask(NBUF), (int)bufs_returned);
  bufs_returned++;
}

static void send_current(int fd, struct conn* c) {
  char* p;
  uint32_t len;
  if (multishot_recv && c->qhead >= 0) {
    p = buf_addr(c->qhead);
    len = bid_len[c->qhead];
  } else {
    p = c->single_buf;
    len = c->single_len;
  }
  struct io_uring_sqe* sqe = sqe_get();
  io_uring_prep_send(sqe, fd, p + c->send_off, len - c->send_off, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(sqe, ud(OP_SEND, fd, c->gen));
  c->send_busy = 1;
}

static void drop_queue(struct conn* c) {
  while (c->qhead >= 0) {
    int bid = c->qhead;
    c->qhead = bid_next[bid];
    buf_return(bid);
  }
  c->qtail = -1;
}

/* Close once nothing is outstanding for the fd; otherwise wait for the CQEs. */
static void maybe_close(int fd, struct conn* c) {
  if (!c->open || c->recv_armed || c->send_busy || c->starved) return;
  if (!c->eof && c->qhead >= 0) return;
  drop_queue(c);
  free(c->single_buf);
  uint32_t gen = c->gen + 1;
  memset(c, 0, sizeof *c);
  c->gen = gen;
  c->qhead = c->qtail = -1;
  close(fd);
}

static void on_accept(struct io_uring_cqe* cqe) {
  int more = (cqe->flags & IORING_CQE_F_MORE) != 0;
  if (cqe->res >= 0) {
    accept_ok_seen = 1;
    int fd = cqe->res;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn* c = conn_of(fd);
    uint32_t gen = c->gen + 1;
    memset(c, 0, sizeof *c);
    c->gen = gen;
    c->open = 1;
    c->qhead = c->qtail = -1;
    c->next_starved = -1;
    arm_recv(fd, c);
  } else if (cqe->res == -EINVAL && multishot_accept && !accept_ok_seen) {
    multishot_accept = 0;
    fprintf(stderr, "uring_echo: multishot accept unsupported, using single-shot accept\n");
  } else if (cqe->res != -EINTR && cqe->res != -ECONNABORTED && cqe->res != -EAGAIN) {
    fprintf(stderr, "uring_echo: accept: %s\n", strerror(-cqe->res));
  }
  if (!more) arm_accept();
}

static void on_recv(int fd, struct conn* c, struct io_uring_cqe* cqe) {
  int more = (cqe->flags & IORING_CQE_F_MORE) != 0;
  int res = cqe->res;
  if (!more) c->recv_armed = 0;

  if (res > 0) {
    recv_ok_seen = 1;
    if (multishot_recv) {
      int bid = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
      bid_len[bid] = (uint32_t)res;
      bid_next[bid] = -1;
      if (c->eof) { /* output side broken: discard */
        buf_return(bid);
      } else {
        if (c->qtail >= 0)
          bid_next[c->qtail] = bid;
        else
          c->qhead = bid;
        c->qtail = bid;
        if (!c->send_busy) {
          c->send_off = 0;
          send_current(fd, c);
        }
      }
      if (!more && !c->eof) arm_recv(fd, c); /* terminated early (e.g. CQ overflow) */
    } else {
      c->single_len = (uint32_t)res;
      c->send_off = 0;
      send_current(fd, c); /* recv re-armed when the send completes */
    }
    return;
  }

  if (res == -EINVAL && c->recv_ms && !recv_ok_seen) {
    if (multishot_recv) {
      multishot_recv = 0;
      fprintf(stderr, "uring_echo: multishot recv unsupported, using single-shot recv\n");
    }
    arm_recv(fd, c); /* every connection armed so far gets here once */
    return;
  }
  if (res == -ENOBUFS && !c->eof) {
    c->starved = 1;
    c->next_starved = starved_head;
    starved_head = fd;
    return;
  }
  if (res == -EINTR || res == -EAGAIN) {
    if (!c->recv_armed) arm_recv(fd, c);
    return;
  }
  /* EOF or error: no more input. */
  if (c->recv_armed) { /* should not happen: a final CQE has no F_MORE */
    c->eof = 1;
    return;
  }
  c->eof = 1;
  maybe_close(fd, c);
}

static void on_send(int fd, struct conn* c, struct io_uring_cqe* cqe) {
  c->send_busy = 0;
  int res = cqe->res;
  if (res < 0) {
    c->eof = 1;
    drop_queue(c);
    if (c->recv_armed) shutdown(fd, SHUT_RDWR); /* makes the multishot recv finish */
    maybe_close(fd, c);
    return;
  }
  uint32_t len = (multishot_recv && c->qhead >= 0) ? bid_len[c->qhead] : c->single_len;
  c->send_off += (uint32_t)res;
  if (c->send_off < len) { /* short send: the rest */
    send_current(fd, c);
    return;
  }
  c->send_off = 0;
  if (multishot_recv && c->qhead >= 0) {
    int bid = c->qhead;
    c->qhead = bid_next[bid];
    if (c->qhead < 0) c->qtail = -1;
    buf_return(bid);
    if (c->qhead >= 0) {
      send_current(fd, c);
      return;
    }
  } else if (!c->eof) {
    arm_recv(fd, c); /* single mode: next recv */
    return;
  }
  maybe_close(fd, c);
}

static void setup_ring(const char* setup) {
  struct io_uring_params p;
  int r = -EINVAL;
  const char* used = "plain";
  if (!strcmp(setup, "defer")) {
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    p.cq_entries = CQ_ENTRIES;
    r = io_uring_queue_init_params(SQ_ENTRIES, &ring, &p);
    used = "defer";
  }
  if (r < 0 && (!strcmp(setup, "defer") || !strcmp(setup, "coop"))) {
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN;
    p.cq_entries = CQ_ENTRIES;
    r = io_uring_queue_init_params(SQ_ENTRIES, &ring, &p);
    used = "coop";
  }
  if (r < 0) {
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CQSIZE;
    p.cq_entries = CQ_ENTRIES;
    r = io_uring_queue_init_params(SQ_ENTRIES, &ring, &p);
    used = "plain";
  }
  if (r < 0) die("io_uring_queue_init_params", -r);
  fprintf(stderr, "uring_echo: setup=%s ", used);
}

/* Provided buffer ring; returns 0 on success. */
static int setup_buf_ring(void) {
  buf_base = mmap(NULL, (size_t)NBUF * BUF_SIZE, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (buf_base == MAP_FAILED) die("mmap", errno);
#ifdef HAVE_IO_URING_SETUP_BUF_RING
  int err = 0;
  br = io_uring_setup_buf_ring(&ring, NBUF, BGID, 0, &err);
  if (!br) return err ? err : -EINVAL;
#else
  /* liburing < 2.4: map the ring ourselves and register it. */
  size_t ring_size = (size_t)NBUF * sizeof(struct io_uring_buf);
  void* mem = mmap(NULL, ring_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) die("mmap", errno);
  br = mem;
  io_uring_buf_ring_init(br);
  struct io_uring_buf_reg reg = {
      .ring_addr = (uint64_t)(uintptr_t)mem, .ring_entries = NBUF, .bgid = BGID};
  int r = io_uring_register_buf_ring(&ring, &reg, 0);
  if (r < 0) {
    munmap(mem, ring_size);
    br = NULL;
    return r;
  }
#endif
  for (int i = 0; i < NBUF; i++) buf_return(i);
  io_uring_buf_ring_advance(br, (int)bufs_returned);
  bufs_returned = 0;
  return 0;
}

static void usage(const char* argv0) {
  fprintf(stderr, "usage: %s --port N [--uring-mode multishot|single] [--setup defer|coop|plain]\n",
          argv0);
  exit(2);
}

int main(int argc, char** argv) {
  int port = -1;
  const char *mode = "multishot", *setup = "defer";
  for (int i = 1; i < argc; i++) {
    if (i + 1 >= argc) usage(argv[0]);
    if (!strcmp(argv[i], "--port"))
      port = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--uring-mode"))
      mode = argv[++i];
    else if (!strcmp(argv[i], "--setup"))
      setup = argv[++i];
    else
      usage(argv[0]);
  }
  if (port < 0 || port > 65535) usage(argv[0]);
  if (strcmp(mode, "multishot") && strcmp(mode, "single")) usage(argv[0]);
  if (strcmp(setup, "defer") && strcmp(setup, "coop") && strcmp(setup, "plain")) usage(argv[0]);

  signal(SIGPIPE, SIG_IGN);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd < 0) die("socket", errno);
  int one = 1;
  setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_ANY)};
  if (bind(listen_fd, (struct sockaddr*)&addr, sizeof addr) < 0) die("bind", errno);
  if (listen(listen_fd, SOMAXCONN) < 0) die("listen", errno);

  setup_ring(setup);
  if (!strcmp(mode, "single")) {
    multishot_accept = multishot_recv = 0;
  } else {
    int r = setup_buf_ring();
    if (r < 0) {
      fprintf(stderr, "(buffer ring unavailable: %s) ", strerror(-r));
      multishot_accept = multishot_recv = 0;
    }
  }
  fprintf(stderr, "mode=%s\n", multishot_recv ? "multishot+bufring" : "single");

  arm_accept();
  for (;;) {
    int r = io_uring_submit_and_wait(&ring, 1);
    if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY && r != -ETIME)
      die("io_uring_submit_and_wait", -r);
    struct io_uring_cqe* cqe;
    unsigned head, count = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      count++;
      uint64_t u = cqe->user_data;
      int op = (int)(u & 7);
      if (op == OP_ACCEPT) {
        on_accept(cqe);
        continue;
      }
      int fd = (int)((u >> 3) & 0x1fffffff);
      struct conn* c = conn_of(fd);
      if (!c->open || c->gen != (uint32_t)(u >> 32)) { /* stale: cannot happen */
        if (cqe->flags & IORING_CQE_F_BUFFER)
          buf_return((int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
        continue;
      }
      if (op == OP_RECV)
        on_recv(fd, c, cqe);
      else if (op == OP_SEND)
        on_send(fd, c, cqe);
    }
    io_uring_cq_advance(&ring, count);
    if (bufs_returned) {
      io_uring_buf_ring_advance(br, (int)bufs_returned);
      bufs_returned = 0;
      while (starved_head >= 0) { /* buffers are back: resume starved receivers */
        int fd = starved_head;
        struct conn* c = conn_of(fd);
        starved_head = c->next_starved;
        c->next_starved = -1;
        c->starved = 0;
        if (c->eof)
          maybe_close(fd, c);
        else
          arm_recv(fd, c);
      }
    }
  }
}
