"""CPython's own asyncio test suite (test.test_asyncio), run on corio's event loop.

Two kinds of module: those that test a loop class directly (test_events, test_sock_lowlevel,
test_sendfile, test_server, test_buffered_proto) get a corio twin of their selector-loop test
class, as CPython tests each of its loops; the others make their loops through the event-loop policy, which
is corio's here (a module's tearDownModule resetting the policy gets corio's back). Every
test must pass, and each module must have run tests on a corio loop, or this fails: a
module whose loops silently stopped being corio's would otherwise pass for nothing.

Needs CPython's test package (Debian: libpython3.11-testsuite).
    PYTHONPATH=<build>/bindings/python python3 cpython_asyncio.py [module ...]
"""

import asyncio
import collections
import importlib
import sys
import unittest

import corio

try:
    from test.test_asyncio import utils as test_utils
except ImportError:
    sys.exit("CPython's test package is missing (Debian: apt-get install libpython3.11-testsuite)")

# Modules whose tests take their loops from the policy.
POLICY_MODULES = [
    "test_tasks", "test_locks", "test_queues", "test_timeouts", "test_taskgroups",
    "test_streams", "test_subprocess", "test_waitfor", "test_context", "test_ssl",
    "test_sslproto", "test_threads", "test_unix_events", "test_base_events",
]
# Modules that test a loop class: (module, mixins of the selector loop's test class).
LOOP_CLASS_MODULES = {
    "test_events": lambda m: (m.UnixEventLoopTestsMixin, m.SubprocessTestsMixin,
                              test_utils.TestCase),
    "test_sock_lowlevel": lambda m: (m.BaseSockTestsMixin, test_utils.TestCase),
    "test_sendfile": lambda m: (m.SendfileTestsBase, test_utils.TestCase),
    "test_server": lambda m: (m.BaseStartServer, unittest.TestCase),
    "test_buffered_proto": lambda m: (m.BaseTestBufferedProtocol, unittest.TestCase),
}

loops_made = collections.Counter()  # module -> tests that made at least one corio loop
current_test = [None]
_tests_with_loops = set()
_corio_init = corio.EventLoop.__init__


def _counting_init(self):
    test = current_test[0]
    if test is not None and test not in _tests_with_loops:
        _tests_with_loops.add(test)
        parts = test.split(".")  # test.test_asyncio.<module>.<class>.<test>, or a twin's
        loops_made[parts[2] if parts[0] == "test" else parts[0]] += 1
    _corio_init(self)


corio.EventLoop.__init__ = _counting_init

_real_set_policy = asyncio.set_event_loop_policy


def _set_policy(policy):
    _real_set_policy(corio.EventLoopPolicy() if policy is None else policy)


asyncio.set_event_loop_policy = _set_policy
asyncio.events.set_event_loop_policy = _set_policy


class _Result(unittest.TextTestResult):
    def startTest(self, test):
        current_test[0] = test.id()
        super().startTest(test)


def corio_twin(name, module):
    bases = LOOP_CLASS_MODULES[name](module)
    # The twin overrides whichever factory its test class asks for its loop.
    loop_method = "new_loop" if any(hasattr(b, "new_loop") for b in bases) else "create_event_loop"
    twin = type("CorioLoopTests", bases, {loop_method: lambda self: corio.EventLoop()})
    twin.__module__ = name  # so the counter files its loops under this module
    return twin


def suite_for(name):
    module = importlib.import_module("test.test_asyncio." + name)
    loader = unittest.defaultTestLoader
    if name in LOOP_CLASS_MODULES:
        return loader.loadTestsFromTestCase(corio_twin(name, module))
    suite = loader.loadTestsFromModule(module)
    return suite


def main(names):
    names = names or POLICY_MODULES + list(LOOP_CLASS_MODULES)
    _set_policy(None)
    suite = unittest.TestSuite(suite_for(n) for n in names)
    result = unittest.TextTestRunner(verbosity=1, resultclass=_Result).run(suite)
    print(f"\ncorio backend: {corio.backend}")
    missing = []
    for name in names:
        count = loops_made.get(name, 0)
        print(f"  {name}: {count} tests ran on a corio loop")
        if count == 0:
            missing.append(name)
    if missing:
        print("no test ran on a corio loop in: " + ", ".join(missing))
    return 0 if result.wasSuccessful() and not missing else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
