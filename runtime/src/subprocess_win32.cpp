// Subprocesses on Windows: not implemented yet (they need CreateProcessW with overlapped
// named pipes). Every entry point raises NotImplementedError, as the README's backend table
// says, so a program links and fails clearly instead of failing to link.
// It must never pretend to start a process.
#ifdef _WIN32

#include "corio/subprocess.hpp"

namespace corio {

namespace {
[[noreturn]] void not_supported() {
  throw NotImplementedError("subprocesses are not supported on Windows yet (corio issue 6)");
}
}  // namespace

namespace detail {
class ProcessState {};
class PipeReaderState {};
class PipeWriterState {};
}  // namespace detail

Coro<std::string> PipeReader::read(std::ptrdiff_t) {
  not_supported();
}
Coro<std::string> PipeReader::readline() {
  not_supported();
}
Coro<std::string> PipeReader::readexactly(std::size_t) {
  not_supported();
}
Coro<std::string> PipeReader::readuntil(std::string) {
  not_supported();
}
bool PipeReader::at_eof() const noexcept {
  return true;
}

void PipeWriter::write(std::string_view) {
  not_supported();
}
void PipeWriter::writelines(std::initializer_list<std::string_view>) {
  not_supported();
}
Coro<void> PipeWriter::drain() {
  not_supported();
}
void PipeWriter::close() {}
bool PipeWriter::is_closing() const noexcept {
  return true;
}
Coro<void> PipeWriter::wait_closed() {
  not_supported();
}
std::size_t PipeWriter::get_write_buffer_size() const noexcept {
  return 0;
}

Process::Process(Process&&) noexcept = default;
Process& Process::operator=(Process&&) noexcept = default;
Process::~Process() = default;
int Process::pid() const noexcept {
  return -1;
}
std::optional<int> Process::returncode() const noexcept {
  return std::nullopt;
}
Coro<int> Process::wait() {
  not_supported();
}
Coro<std::pair<std::string, std::string>> Process::communicate(std::string) {
  not_supported();
}
void Process::send_signal(int) {
  not_supported();
}
void Process::terminate() {
  not_supported();
}
void Process::kill() {
  not_supported();
}

Coro<Process> create_subprocess_exec(std::string, std::vector<std::string>, SubprocessOptions) {
  not_supported();
}
Coro<Process> create_subprocess_shell(std::string, SubprocessOptions) {
  not_supported();
}
void set_pidfd_child_watcher_enabled(bool) noexcept {}

}  // namespace corio

#endif  // _WIN32
