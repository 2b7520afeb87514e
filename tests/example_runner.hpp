// Test helper: runs a built example program and captures its output (stdout and stderr).
// It must never depend on corio itself: it looks at programs from the outside, as a user.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

namespace corio::testing {

struct ExampleOutput {
  int status = -1;
  std::string text;
};

inline std::string examples_dir() {
  const char* dir = std::getenv("CORIO_EXAMPLES_DIR");
#ifdef CORIO_DEFAULT_EXAMPLES_DIR
  return dir ? dir : CORIO_DEFAULT_EXAMPLES_DIR;
#else
  return dir ? dir : "examples";
#endif
}

inline ExampleOutput run_example(const std::string& name, const std::string& args,
                                 bool virtual_time) {
  std::string command;
#ifdef _WIN32
  command = (virtual_time ? "set CORIO_VIRTUAL_TIME=1&& " : "set CORIO_VIRTUAL_TIME=&& ") +
            examples_dir() + "\\" + name + ".exe " + args + " 2>&1";
  FILE* pipe = _popen(command.c_str(), "r");
#else
  command = std::string(virtual_time ? "CORIO_VIRTUAL_TIME=1 " : "CORIO_VIRTUAL_TIME= ") + "'" +
            examples_dir() + "/" + name + "' " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
#endif
  ExampleOutput out;
  if (pipe == nullptr) return out;
  char buffer[4096];
  std::size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) out.text.append(buffer, n);
#ifdef _WIN32
  out.status = _pclose(pipe);
#else
  const int raw = pclose(pipe);
  out.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
#endif
  return out;
}

}  // namespace corio::testing
