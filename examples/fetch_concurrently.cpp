// fetch_concurrently: the tutorial's "fetch several URLs concurrently" program, against real
// servers: three small HTTP servers on loopback answer after a one-second delay, and
// fetch_data(url) issues real HTTP GETs through open_connection. gather() runs the three
// fetches at once, so the program takes about 1 s, not 3 s.
#include <corio/corio.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

// A server that answers every request with its own name after `delay` seconds.
corio::Coro<void> slow_http(corio::StreamReader reader, corio::StreamWriter writer,
                            std::string name, double delay) {
  try {
    co_await reader.readuntil("\r\n\r\n");
    co_await corio::sleep(delay);
    const std::string body = "Data from " + name;
    writer.write("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
                 "\r\nConnection: close\r\n\r\n" + body);
    co_await writer.drain();
  } catch (const corio::OSError&) {
  } catch (const corio::IncompleteReadError&) {
  }
  writer.close();
}

// "http://127.0.0.1:PORT/path" -> host, port, path (enough for this program's URLs).
struct Url {
  std::string host;
  std::uint16_t port = 80;
  std::string path = "/";
};
Url parse_url(const std::string& url) {
  Url out;
  std::string rest = url.substr(url.find("://") + 3);
  const auto slash = rest.find('/');
  if (slash != std::string::npos) {
    out.path = rest.substr(slash);
    rest.resize(slash);
  }
  const auto colon = rest.rfind(':');
  out.host = rest.substr(0, colon);
  if (colon != std::string::npos)
    out.port = static_cast<std::uint16_t>(std::atoi(rest.c_str() + colon + 1));
  return out;
}

corio::Coro<std::string> fetch_data(std::string url) {
  const Url target = parse_url(url);
  auto [reader, writer] = co_await corio::open_connection(target.host, target.port);
  writer.write("GET " + target.path + " HTTP/1.1\r\nHost: " + target.host +
               "\r\nConnection: close\r\n\r\n");
  co_await writer.drain();
  const std::string response = co_await reader.read();  // to EOF: the server closes
  writer.close();
  const auto body = response.find("\r\n\r\n");
  co_return body == std::string::npos ? std::string() : response.substr(body + 4);
}

corio::Coro<void> amain() {
  std::vector<corio::Server> servers;
  std::vector<std::string> urls;
  for (const char* name : {"url1", "url2", "url3"}) {
    const std::string server_name = name;
    // Named, not a temporary inside the co_await: GCC 12 destroys such a temporary twice.
    corio::ClientConnectedCallback handler = [server_name](corio::StreamReader r,
                                                           corio::StreamWriter w) {
      return slow_http(std::move(r), std::move(w), server_name, 1.0);
    };
    corio::Server server = co_await corio::start_server(std::move(handler), "127.0.0.1", 0);
    const std::string address = corio::format_address(server.addresses().at(0));
    urls.push_back("http://" + address + "/" + name);
    servers.push_back(std::move(server));
  }
  std::vector<corio::Coro<std::string>> tasks;
  for (const std::string& url : urls) tasks.push_back(fetch_data(url));
  // Run every fetch concurrently.
  std::vector<std::string> results = co_await corio::gather(std::move(tasks));
  std::printf("[");
  for (std::size_t i = 0; i < results.size(); ++i) {
    std::printf("%s'%s'", i ? ", " : "", results[i].c_str());
  }
  std::printf("]\n");
  for (corio::Server& server : servers) server.close();
  for (corio::Server& server : servers) co_await server.wait_closed();
}

}  // namespace

int main() {
  corio::Runner runner;
  const double start = runner.get_loop().time();
  runner.run(amain());
  std::printf("elapsed %0.2f seconds\n", runner.get_loop().time() - start);
}
