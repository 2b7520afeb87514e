// asyncio.Server: listening sockets, accept loops (one task per listening socket), the
// connection count behind wait_closed, and serve_forever. An exception escaping a client
// callback must never go unreported, and a closed server must never accept again.
#include "corio/server.hpp"

#include <cerrno>
#include <unordered_set>

#include "corio/dns.hpp"
#include "corio/event_loop.hpp"
#include "corio/sleep.hpp"
#include "corio/sock_ops.hpp"
#include "corio/task.hpp"
#include "net_internal.hpp"
#include "stream_state.hpp"

namespace corio {

namespace detail {

namespace {
constexpr double kAcceptRetryDelay = 1.0;  // asyncio's constants.ACCEPT_RETRY_DELAY
}

class ServerState : public ConnectionTracker, public std::enable_shared_from_this<ServerState> {
 public:
  ServerState(EventLoop& loop, ClientConnectedCallback callback, ServerOptions options)
      : loop_(loop), callback_(std::move(callback)), options_(options) {}

  void attach(StreamTransport& t) override { clients_.insert(&t); }
  void detach(StreamTransport& t) override {
    clients_.erase(&t);
    if (clients_.empty() && sockets_closed_) wakeup();
  }

  void start_serving() {
    if (serving_ || sockets_closed_) return;
    serving_ = true;
    for (Socket& s : sockets_) s.listen(options_.backlog);
    for (std::size_t i = 0; i < sockets_.size(); ++i) {
      accept_tasks_.emplace_back(
          loop_.create_task(accept_loop(shared_from_this(), i), TaskOptions{.eager_start = false}));
    }
  }

  void close() {
    if (sockets_closed_) return;
    sockets_closed_ = true;
    serving_ = false;
    // Closing through the backend ends the pending accepts (they see EBADF and stop).
    std::vector<Socket> closing = std::move(sockets_);
    sockets_.clear();
    for (Socket& s : closing) s.close();
    if (unix_identity_ && core::net::socket_file_identity(unix_path_) == unix_identity_) {
      core::net::remove_file(unix_path_);
    }
    forever_waiters_.wake_all();
    if (clients_.empty()) wakeup();
  }

  void close_clients(bool abort) {
    std::vector<StreamTransport*> clients(clients_.begin(), clients_.end());
    for (StreamTransport* t : clients) {
      if (abort) {
        t->abort();
      } else {
        t->close();
      }
    }
  }

  Coro<void> serve_forever() {
    std::shared_ptr<ServerState> self = shared_from_this();
    if (serving_forever_) throw RuntimeError("server is already being awaited on serve_forever()");
    if (sockets_closed_) throw RuntimeError("server is closed");
    start_serving();
    serving_forever_ = true;
    std::exception_ptr cancelled;
    try {
      co_await IoWaitOn(forever_waiters_);
      // Woken by close(): asyncio cancels serve_forever's future then.
      cancelled = std::make_exception_ptr(CancelledError());
    } catch (const CancelledError&) {
      cancelled = std::current_exception();
    }
    serving_forever_ = false;
    close();
    co_await wait_closed();
    std::rethrow_exception(cancelled);
  }

  Coro<void> wait_closed() {
    std::shared_ptr<ServerState> self = shared_from_this();
    if (fully_closed_) co_return;
    co_await IoWaitOn(closed_waiters_);
  }

  EventLoop& loop() const noexcept { return loop_; }
  bool is_serving() const noexcept { return serving_; }
  std::vector<Socket>& sockets() noexcept { return sockets_; }
  void set_unix_path(std::string path) {
    unix_path_ = std::move(path);
    unix_identity_ = core::net::socket_file_identity(unix_path_);
  }

 private:
  void wakeup() {
    fully_closed_ = true;
    closed_waiters_.wake_all();
  }

  static Coro<void> accept_loop(std::shared_ptr<ServerState> self, std::size_t index) {
    while (self->serving_ && index < self->sockets_.size()) {
      bool pause = false;
      try {
        Accepted conn = co_await sock_accept(self->sockets_[index]);
        if (!self->serving_) break;  // closed while the connection was being accepted
        self->spawn(std::move(conn.first));
      } catch (const OSError& e) {
        if (!self->serving_) break;
        const int err = e.error_number();
        if (err == ECONNABORTED || err == EAGAIN || err == EINTR || err == EPROTO) continue;
        // Out of descriptors or memory (or something unexpected): report, pause, retry.
        self->loop_.call_exception_handler(
            {"socket.accept() out of system resource", std::current_exception(), {}});
        pause = true;
      }
      if (pause) co_await sleep(kAcceptRetryDelay);
    }
  }

  void spawn(Socket sock) {
    if (options_.keep_alive) {
      try {
        sock.setsockopt(SocketOption::keep_alive, 1);
      } catch (const OSError&) {
      }
    }
    StreamPair streams = make_stream(loop_, std::move(sock), options_.limit, shared_from_this());
    loop_.create_task(
        run_client(shared_from_this(), std::move(streams.first), std::move(streams.second)),
        TaskOptions{.eager_start = false});
  }

  static Coro<void> run_client(std::shared_ptr<ServerState> self, StreamReader reader,
                               StreamWriter writer) {
    std::exception_ptr error;
    try {
      co_await self->callback_(reader, writer);
    } catch (const CancelledError&) {
      writer.close();
      throw;
    } catch (...) {
      error = std::current_exception();
    }
    if (error) {
      self->loop_.call_exception_handler({"Unhandled exception in client_connected_cb", error, {}});
      writer.close();
    }
  }

  EventLoop& loop_;
  ClientConnectedCallback callback_;
  ServerOptions options_;
  std::vector<Socket> sockets_;
  std::vector<AnyTask> accept_tasks_;
  std::unordered_set<StreamTransport*> clients_;
  bool serving_ = false;
  bool sockets_closed_ = false;  // asyncio: _sockets is None
  bool fully_closed_ = false;    // asyncio: _waiters is None
  bool serving_forever_ = false;
  IoWaitList forever_waiters_;
  IoWaitList closed_waiters_;
  std::string unix_path_;
  std::optional<core::net::FileIdentity> unix_identity_;
};

namespace {

Socket make_listener(const AddressInfo& info, const ServerOptions& options) {
  Socket sock = Socket::create(info.family, SocketKind::stream, info.protocol);
  if (options.reuse_address) sock.setsockopt(SocketOption::reuse_address, 1);
  if (options.reuse_port) sock.setsockopt(SocketOption::reuse_port, 1);
  // With both families bound to the same port, the IPv6 socket must not claim IPv4 too.
  if (info.family == AddressFamily::ipv6) sock.setsockopt(SocketOption::ipv6_only, 1);
  try {
    sock.bind(info.address);
  } catch (const OSError& e) {
    throw_os_error(e.error_number(),
                   "error while attempting to bind on address " + format_address(info.address));
  }
  return sock;
}

Coro<Server> finish_start(std::shared_ptr<ServerState> state, bool start) {
  Server server(state);
  if (start) {
    state->start_serving();
    co_await sleep(0);  // as asyncio: let the accept loops start
  }
  co_return server;
}

}  // namespace

}  // namespace detail

// --- Server ---------------------------------------------------------------------------

Server& Server::operator=(Server&& other) noexcept {
  if (this != &other) {
    if (state_) state_->close();
    state_ = std::move(other.state_);
  }
  return *this;
}

Server::~Server() {
  if (state_) state_->close();
}

namespace {
detail::ServerState& state_of(const std::shared_ptr<detail::ServerState>& state) {
  if (!state) throw RuntimeError("empty Server");
  return *state;
}
}  // namespace

void Server::close() {
  state_of(state_).close();
}
void Server::close_clients() {
  state_of(state_).close_clients(false);
}
void Server::abort_clients() {
  state_of(state_).close_clients(true);
}
bool Server::is_serving() const noexcept {
  return state_ && state_->is_serving();
}

Coro<void> Server::start_serving() {
  std::shared_ptr<detail::ServerState> state = state_;
  state_of(state).start_serving();
  co_await sleep(0);
}

Coro<void> Server::serve_forever() {
  return state_of(state_).serve_forever();
}
Coro<void> Server::wait_closed() {
  return state_of(state_).wait_closed();
}

const std::vector<Socket>& Server::sockets() const noexcept {
  static const std::vector<Socket> kNone;
  return state_ ? state_->sockets() : kNone;
}

std::vector<SocketAddress> Server::addresses() const {
  std::vector<SocketAddress> out;
  for (const Socket& s : sockets()) out.push_back(s.getsockname());
  return out;
}

EventLoop& Server::get_loop() const {
  return state_of(state_).loop();
}

Coro<void> Server::aenter() {
  co_return;
}

Coro<void> Server::aexit(std::exception_ptr) {
  std::shared_ptr<detail::ServerState> state = state_;
  state_of(state).close();
  co_await state->wait_closed();
}

// --- start_server -----------------------------------------------------------------------

Coro<Server> start_server(ClientConnectedCallback cb, std::string host, std::uint16_t port,
                          ServerOptions options) {
  EventLoop& loop = get_running_loop();
  std::vector<AddressInfo> infos;
  if (std::optional<SocketAddress> numeric = parse_ip_address(host, port)) {
    AddressInfo info;
    info.family = address_family(*numeric);
    info.kind = SocketKind::stream;
    info.protocol = core::net::kProtocolTcp;
    info.address = *numeric;
    infos.push_back(info);
  } else {
    infos = co_await getaddrinfo(host, std::to_string(port), options.family, SocketKind::stream, 0,
                                 ai::passive);
  }
  // The resolver may repeat an address (one per protocol, say): bind each once.
  std::vector<AddressInfo> unique;
  for (const AddressInfo& info : infos) {
    bool seen = false;
    for (const AddressInfo& u : unique) seen = seen || (u.address == info.address);
    if (!seen) unique.push_back(info);
  }
  if (unique.empty()) throw OSError(EADDRNOTAVAIL, "getaddrinfo() returned empty list");
  auto state = std::make_shared<detail::ServerState>(loop, std::move(cb), options);
  for (const AddressInfo& info : unique)
    state->sockets().push_back(detail::make_listener(info, options));
  co_return co_await detail::finish_start(std::move(state), options.start_serving);
}

Coro<Server> start_server(ClientConnectedCallback cb, std::string host, std::uint16_t port,
                          std::size_t limit) {
  ServerOptions options;
  options.limit = limit;
  return start_server(std::move(cb), std::move(host), port, options);
}

Coro<Server> start_server(ClientConnectedCallback cb, Socket sock, ServerOptions options) {
  auto state = std::make_shared<detail::ServerState>(get_running_loop(), std::move(cb), options);
  state->sockets().push_back(std::move(sock));
  co_return co_await detail::finish_start(std::move(state), options.start_serving);
}

Coro<Server> start_unix_server(ClientConnectedCallback cb, std::string path,
                               ServerOptions options) {
  if (core::net::socket_file_identity(path)) core::net::remove_file(path);  // a stale socket
  Socket sock = Socket::create(AddressFamily::unix_domain);
  sock.bind(unix_address(path));
  auto state = std::make_shared<detail::ServerState>(get_running_loop(), std::move(cb), options);
  state->sockets().push_back(std::move(sock));
  state->set_unix_path(path);
  co_return co_await detail::finish_start(std::move(state), options.start_serving);
}

}  // namespace corio
