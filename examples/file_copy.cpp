// file_copy: copies a file in fixed-size chunks with at most K chunks in flight, each chunk a
// read at its offset followed by a write at the same offset (what an aiofiles copy does,
// with corio::File: native I/O on io_uring/IOCP, the thread pool on epoll).
//   file_copy SRC DST [CHUNK_BYTES [K]]
// Without arguments it makes a 4 MiB source in the temporary directory, copies it, checks the
// copy byte for byte and removes both. It must never hold more than K chunks in memory.
#include <corio/corio.hpp>
#include <corio/file.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <string>

namespace {

corio::Coro<void> copy_chunk(corio::File& src, corio::File& dst, corio::Semaphore& slots,
                             std::uint64_t offset, std::size_t length) {
  auto slot = co_await slots.scoped();  // bounded concurrency: at most K chunks in flight
  const std::string data = co_await src.read_at(offset, length);
  co_await dst.write_all_at(offset, data);
}

corio::Coro<std::uint64_t> copy_file(std::string from, std::string to, std::size_t chunk,
                                     int parallel) {
  corio::File src = co_await corio::File::open(from, "rb");
  corio::File dst = co_await corio::File::open(to, "wb");
  const std::uint64_t size = co_await src.size();
  corio::Semaphore slots(parallel);
  co_await corio::TaskGroup::run([&](corio::TaskGroup& tg) -> corio::Coro<void> {
    for (std::uint64_t offset = 0; offset < size; offset += chunk) {
      const std::size_t length =
          static_cast<std::size_t>(std::min<std::uint64_t>(chunk, size - offset));
      tg.create_task(copy_chunk(src, dst, slots, offset, length));
    }
    co_return;
  });
  co_await dst.sync();
  co_await dst.close();
  co_await src.close();
  co_return size;
}

corio::Coro<int> demo() {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path();
  // Names of this run only: two runs at once (test suites of two builds) must not share files.
  const std::string tag =
      std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  const std::string from = (dir / ("corio_file_copy_src_" + tag + ".bin")).string();
  const std::string to = (dir / ("corio_file_copy_dst_" + tag + ".bin")).string();
  std::string content(4 << 20, '\0');
  for (std::size_t i = 0; i < content.size(); ++i)
    content[i] = static_cast<char>((i * 31 + i / 4093) & 0xff);
  {
    corio::File f = co_await corio::File::open(from, "wb");
    co_await f.write(content);
    co_await f.close();
  }
  const std::uint64_t copied = co_await copy_file(from, to, 256 * 1024, 4);
  corio::File check = co_await corio::File::open(to, "rb");
  const std::string back = co_await check.read();
  co_await check.close();
  const bool same = back == content;
  std::printf("copied %llu bytes in %llu chunks of 256 KiB, at most 4 at a time: %s\n",
              static_cast<unsigned long long>(copied),
              static_cast<unsigned long long>((copied + 256 * 1024 - 1) / (256 * 1024)),
              same ? "identical" : "DIFFERENT");
  std::error_code ignored;
  fs::remove(from, ignored);
  fs::remove(to, ignored);
  co_return same ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 1) return corio::run(demo());
  if (argc < 3 || argc > 5) {
    std::fprintf(stderr, "usage: %s SRC DST [CHUNK_BYTES [K]]\n", argv[0]);
    return 2;
  }
  const std::size_t chunk = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 1 << 20;
  const int parallel = argc > 4 ? std::atoi(argv[4]) : 4;
  if (chunk == 0 || parallel <= 0) {
    std::fprintf(stderr, "CHUNK_BYTES and K must be positive\n");
    return 2;
  }
  try {
    const std::uint64_t copied = corio::run(copy_file(argv[1], argv[2], chunk, parallel));
    std::printf("copied %llu bytes\n", static_cast<unsigned long long>(copied));
  } catch (const std::exception& e) {  // OSError, or an ExceptionGroup of them
    std::fprintf(stderr, "file_copy: %s\n", e.what());
    return 1;
  }
  return 0;
}
