/* uv_echo.c - libuv echo server.
 *
 * Usage: uv_echo --port N
 *
 * One uv_default_loop() on the main thread.  uv_read_start() on every
 * accepted connection; each chunk read is written back with uv_write() from
 * the same buffer (no copy).  Buffers and write requests live together in
 * blocks recycled through a free list, so the steady state does not call
 * malloc.  Runs until killed.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#define BLOCK_DATA 4096

struct block {
  uv_write_t req; /* req.data points back to the block */
  struct block* next;
  char data[BLOCK_DATA];
};

static struct block* free_blocks;

static struct block* block_get(void) {
  struct block* b = free_blocks;
  if (b) {
    free_blocks = b->next;
    return b;
  }
  b = malloc(sizeof *b);
  if (!b) {
    fprintf(stderr, "uv_echo: out of memory\n");
    exit(1);
  }
  return b;
}

static void block_put(struct block* b) {
  b->next = free_blocks;
  free_blocks = b;
}

static struct block* block_of_base(char* base) {
  return (struct block*)(base - offsetof(struct block, data));
}

static void on_close(uv_handle_t* h) {
  free(h);
}

static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
  (void)h;
  (void)suggested;
  struct block* b = block_get();
  *buf = uv_buf_init(b->data, BLOCK_DATA);
}

static void on_write(uv_write_t* req, int status) {
  block_put((struct block*)req->data);
  if (status < 0 && !uv_is_closing((uv_handle_t*)req->handle))
    uv_close((uv_handle_t*)req->handle, on_close);
}

static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  struct block* b = buf->base ? block_of_base(buf->base) : NULL;
  if (nread > 0) {
    b->req.data = b;
    uv_buf_t out = uv_buf_init(b->data, (unsigned)nread);
    if (uv_write(&b->req, s, &out, 1, on_write) < 0) {
      block_put(b);
      if (!uv_is_closing((uv_handle_t*)s)) uv_close((uv_handle_t*)s, on_close);
    }
    return;
  }
  if (b) block_put(b);
  if (nread < 0 && !uv_is_closing((uv_handle_t*)s)) uv_close((uv_handle_t*)s, on_close);
}

static void on_connection(uv_stream_t* server, int status) {
  if (status < 0) return;
  uv_tcp_t* client = malloc(sizeof *client);
  if (!client) return;
  uv_tcp_init(server->loop, client);
  if (uv_accept(server, (uv_stream_t*)client) != 0) {
    uv_close((uv_handle_t*)client, on_close);
    return;
  }
  uv_tcp_nodelay(client, 1);
  uv_read_start((uv_stream_t*)client, on_alloc, on_read);
}

int main(int argc, char** argv) {
  int port = -1;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
      port = atoi(argv[++i]);
    } else {
      port = -1;
      break;
    }
  }
  if (port < 0 || port > 65535) {
    fprintf(stderr, "usage: %s --port N\n", argv[0]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  uv_loop_t* loop = uv_default_loop();
  uv_tcp_t server;
  uv_tcp_init(loop, &server);
  struct sockaddr_in addr;
  uv_ip4_addr("0.0.0.0", port, &addr);
  int r = uv_tcp_bind(&server, (const struct sockaddr*)&addr, 0);
  if (r == 0) r = uv_listen((uv_stream_t*)&server, SOMAXCONN, on_connection);
  if (r != 0) {
    fprintf(stderr, "uv_echo: %s\n", uv_strerror(r));
    return 1;
  }
  return uv_run(loop, UV_RUN_DEFAULT);
}
