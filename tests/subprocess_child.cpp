// A child program for the subprocess tests: one small executable that behaves the same on
// POSIX and on Windows (where sh, cat and head do not exist), so one test source can drive
// real children everywhere. Its standard streams are binary, so "\n" stays "\n" on Windows.
// It must never depend on corio (it tests corio from the outside) and never read or write
// more than its mode asks for.
//
//   subprocess_child MODE [ARGS...]
//   args A B ...          prints each argument as "<length>:<argument>\n"
//   cat                   copies stdin to stdout
//   cat-to-stderr TEXT    copies stdin to stderr, then prints TEXT to stdout
//   count                 reads stdin to EOF, prints the number of bytes
//   fill N M              writes N bytes 'o' to stdout, then M bytes 'e' to stderr
//   print TEXT            writes TEXT with "\n" escapes decoded, no newline added
//   out-err OUT ERR       writes OUT to stdout, then ERR to stderr (flushing each)
//   env NAME              prints the variable's value (or "<unset>") and a newline
//   cwd                   prints the working directory and a newline
//   exit CODE             exits with CODE
//   sleep MS              sleeps MS milliseconds, reading nothing
//   sleep-then-count MS   sleeps, then does what count does
//   print-then-sleep TEXT MS   does what print does, then sleeps
//   zero-write-then TEXT  makes a zero-length write to stdout, then prints TEXT
//   close-stdin-then MS TEXT   closes stdin, sleeps, prints TEXT
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#ifdef _WIN32
// clang-format off
#include <windows.h>
// clang-format on
#include <direct.h>
#include <fcntl.h>
#include <io.h>
#else
#include <unistd.h>
#endif

namespace {

void put(std::FILE* f, const std::string& s) {
  std::fwrite(s.data(), 1, s.size(), f);
  std::fflush(f);
}

std::string decode(const char* text) {
  std::string out;
  for (const char* p = text; *p != '\0'; ++p) {
    if (p[0] == '\\' && p[1] == 'n') {
      out += '\n';
      ++p;
    } else {
      out += *p;
    }
  }
  return out;
}

void nap(const char* ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(std::atol(ms)));
}

unsigned long long count_stdin() {
  char buffer[65536];
  unsigned long long total = 0;
  std::size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, stdin)) > 0) total += n;
  return total;
}

void fill(std::FILE* f, unsigned long long n, char c) {
  const std::string chunk(65536, c);
  while (n > 0) {
    const std::size_t k = n < chunk.size() ? static_cast<std::size_t>(n) : chunk.size();
    std::fwrite(chunk.data(), 1, k, f);
    n -= k;
  }
  std::fflush(f);
}

}  // namespace

int main(int argc, char** argv) {
#ifdef _WIN32
  _setmode(_fileno(stdin), _O_BINARY);
  _setmode(_fileno(stdout), _O_BINARY);
  _setmode(_fileno(stderr), _O_BINARY);
#endif
  if (argc < 2) return 100;
  const std::string mode = argv[1];
  if (mode == "args") {
    for (int i = 2; i < argc; ++i)
      put(stdout, std::to_string(std::strlen(argv[i])) + ":" + argv[i] + "\n");
  } else if (mode == "cat" || (mode == "cat-to-stderr" && argc == 3)) {
    std::FILE* to = mode == "cat" ? stdout : stderr;
    char buffer[65536];
    std::size_t n;
    while ((n = std::fread(buffer, 1, sizeof buffer, stdin)) > 0) {
      std::fwrite(buffer, 1, n, to);
      std::fflush(to);
    }
    if (mode != "cat") put(stdout, argv[2]);
  } else if (mode == "count") {
    put(stdout, std::to_string(count_stdin()));
  } else if (mode == "fill" && argc == 4) {
    fill(stdout, std::strtoull(argv[2], nullptr, 10), 'o');
    fill(stderr, std::strtoull(argv[3], nullptr, 10), 'e');
  } else if (mode == "print" && argc == 3) {
    put(stdout, decode(argv[2]));
  } else if (mode == "out-err" && argc == 4) {
    put(stdout, argv[2]);
    put(stderr, argv[3]);
  } else if (mode == "env" && argc == 3) {
    const char* value = std::getenv(argv[2]);
    put(stdout, std::string(value != nullptr ? value : "<unset>") + "\n");
  } else if (mode == "cwd") {
    char buffer[4096] = {};
#ifdef _WIN32
    if (_getcwd(buffer, sizeof buffer) == nullptr) return 101;
#else
    if (::getcwd(buffer, sizeof buffer) == nullptr) return 101;
#endif
    put(stdout, std::string(buffer) + "\n");
  } else if (mode == "exit" && argc == 3) {
    return std::atoi(argv[2]);
  } else if (mode == "sleep" && argc == 3) {
    nap(argv[2]);
  } else if (mode == "sleep-then-count" && argc == 3) {
    nap(argv[2]);
    put(stdout, std::to_string(count_stdin()));
  } else if (mode == "print-then-sleep" && argc == 4) {
    put(stdout, decode(argv[2]));
    nap(argv[3]);
  } else if (mode == "zero-write-then" && argc == 3) {
    // A zero-length write straight to the handle (stdio would skip it): on a Windows byte
    // pipe it can complete the reader's pending read with 0 bytes, which is not EOF.
    nap("50");
#ifdef _WIN32
    DWORD written = 0;
    ::WriteFile(::GetStdHandle(STD_OUTPUT_HANDLE), "", 0, &written, nullptr);
#else
    if (::write(1, "", 0) < 0) return 102;
#endif
    nap("50");
    put(stdout, argv[2]);
  } else if (mode == "close-stdin-then" && argc == 4) {
    std::fclose(stdin);  // closes descriptor 0, and with it the pipe's handle
    nap(argv[2]);
    put(stdout, argv[3]);
  } else {
    return 100;
  }
  return 0;
}
