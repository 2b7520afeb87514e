// Servers: asyncio.start_server / start_unix_server and asyncio.Server.
// Each accepted connection becomes a (StreamReader, StreamWriter) pair handed to the client
// callback, which runs as its own task; an exception escaping it goes to the loop's
// exception handler and closes the connection, as in asyncio. Server follows 3.12.1+:
// wait_closed() waits for close() *and* for every connection to finish; 3.13's
// close_clients()/abort_clients() are there too. A Unix server removes its socket file on
// close (3.13's cleanup_socket=True) if the file is still the one it created.
// Server is a move-only owner: destroying it closes it (without waiting). It is an async
// context manager for async_with(): the exit closes and waits, as `async with server:`.
// The server must never accept on a closed socket, nor keep a connection's task alive.
#pragma once

#include <absl/functional/any_invocable.h>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "corio/coro.hpp"
#include "corio/socket.hpp"
#include "corio/streams.hpp"

namespace corio {

class EventLoop;

namespace detail {
class ServerState;
}

// The keyword arguments of asyncio.start_server that apply here.
struct ServerOptions {
  std::size_t limit = kDefaultStreamLimit;
  AddressFamily family = AddressFamily::unspecified;
  int backlog = 100;
  bool reuse_address = true;  // asyncio's default on POSIX
  bool reuse_port = false;
  bool keep_alive = false;
  bool start_serving = true;
};

// async def client_connected_cb(reader, writer)
// The connection lives as long as a StreamWriter handle of it does (streams.hpp): a callback
// that returns without closing closes it then, unless it handed the writer on. This differs
// from asyncio, whose protocol keeps a server connection open until someone closes it;
// keeping only the reader is not enough here, keep the writer (or both).
using ClientConnectedCallback = absl::AnyInvocable<Coro<void>(StreamReader, StreamWriter)>;

class Server {
 public:
  Server() noexcept = default;
  explicit Server(std::shared_ptr<detail::ServerState> state) noexcept : state_(std::move(state)) {}
  Server(Server&& other) noexcept = default;
  Server& operator=(Server&& other) noexcept;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  ~Server();

  // Stops listening (the listening sockets are closed); connections stay open.
  void close();
  // 3.13: close (gracefully) / abort every connection the server accepted.
  void close_clients();
  void abort_clients();
  bool is_serving() const noexcept;
  // Starts accepting (when created with start_serving = false).
  Coro<void> start_serving();
  // Accepts until the server is closed. When another task closes the server, this raises
  // CancelledError after the connections are gone, as asyncio does.
  Coro<void> serve_forever();
  // Waits until close() was called and every connection has finished.
  Coro<void> wait_closed();
  // The listening sockets (empty once closed).
  const std::vector<Socket>& sockets() const noexcept;
  // Their local addresses, for a server bound to port 0.
  std::vector<SocketAddress> addresses() const;
  EventLoop& get_loop() const;

  // `async with server:` (see async_context.hpp): aenter does nothing, aexit closes and
  // waits for the connections.
  Coro<void> aenter();
  Coro<void> aexit(std::exception_ptr error);

 private:
  std::shared_ptr<detail::ServerState> state_;
};

// asyncio.start_server(cb, host, port, limit=, family=, backlog=, reuse_address=,
// reuse_port=, start_serving=). An empty host binds every interface (IPv4 and IPv6).
Coro<Server> start_server(ClientConnectedCallback client_connected_cb, std::string host,
                          std::uint16_t port, ServerOptions options = {});
Coro<Server> start_server(ClientConnectedCallback client_connected_cb, std::string host,
                          std::uint16_t port, std::size_t limit);
// asyncio.start_server(cb, sock=...): serve on a bound socket.
Coro<Server> start_server(ClientConnectedCallback client_connected_cb, Socket sock,
                          ServerOptions options = {});
// asyncio.start_unix_server(cb, path, ...). A stale socket file at `path` is replaced; a path
// starting with '\0' names Linux's abstract namespace.
Coro<Server> start_unix_server(ClientConnectedCallback client_connected_cb, std::string path,
                               ServerOptions options = {});

}  // namespace corio
