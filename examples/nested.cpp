// nested: a coroutine that is called but never awaited does not run; corio warns about it
// at run time (as Python's RuntimeWarning) and [[nodiscard]] warns at compile time.
#include <corio/corio.hpp>

#include <cstdio>

corio::Coro<int> nested() {
  co_return 42;
}

corio::Coro<void> amain() {
  // Nothing happens if we just call "nested()": a coroutine object is created but not
  // awaited, so it won't run at all. (The cast silences the compile-time warning.)
  (void)nested();
  // Let's do it differently now and await it:
  std::printf("%d\n", co_await nested());  // will print "42".
}

int main() {
  corio::run(amain());
}
