"""The corio package's own tests: what the binding adds to asyncio's loop (its engine, the
GIL, descriptor bookkeeping), beyond CPython's suite (cpython_asyncio.py)."""

import asyncio
import errno
import gc
import os
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest
import weakref

import corio


class CorioLoopTest(unittest.TestCase):
    def setUp(self):
        self.loop = corio.new_event_loop()

    def tearDown(self):
        if not self.loop.is_closed():
            self.loop.close()
        asyncio.set_event_loop_policy(None)

    def test_backend_is_the_one_built_in(self):
        self.assertIn(corio.backend, {"epoll", "io_uring", "kqueue"})
        self.assertIn(f"backend={corio.backend}", repr(self.loop))

    def test_run_gives_a_corio_loop(self):
        async def main():
            return type(asyncio.get_running_loop())

        self.assertIs(corio.run(main()), corio.EventLoop)

    def test_install_makes_every_new_loop_a_corio_loop(self):
        corio.install()
        loop = asyncio.new_event_loop()
        try:
            self.assertIsInstance(loop, corio.EventLoop)
        finally:
            loop.close()

        async def main():
            return type(asyncio.get_running_loop())

        self.assertIs(asyncio.run(main()), corio.EventLoop)

    def test_callbacks_run_in_order_with_their_arguments(self):
        seen = []
        self.loop.call_soon(seen.append, 1)
        self.loop.call_later(0.01, seen.append, 3)
        self.loop.call_soon(seen.append, 2)
        self.loop.call_later(0.02, self.loop.stop)
        self.loop.run_forever()
        self.assertEqual(seen, [1, 2, 3])

    def test_threadsafe_calls_from_another_thread_keep_fifo_order(self):
        seen = []
        t = threading.Thread(target=self.loop.call_soon_threadsafe, args=(seen.append, "first"))
        t.start()
        t.join()
        self.loop.call_soon(seen.append, "second")
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()
        self.assertEqual(seen, ["first", "second"])

    def test_threadsafe_call_wakes_a_loop_waiting_for_io(self):
        def later():
            time.sleep(0.05)
            self.loop.call_soon_threadsafe(self.loop.stop)

        t = threading.Thread(target=later)
        started = time.monotonic()
        t.start()
        self.loop.run_forever()  # nothing else scheduled: only the wake-up ends this
        t.join()
        self.assertLess(time.monotonic() - started, 5)

    def test_cancelled_timer_leaves_corio_heap_at_once(self):
        timers = [self.loop.call_later(3600, lambda: None) for _ in range(100)]
        self.assertEqual(self.loop._core.timer_count, 100)
        for timer in timers[:60]:
            timer.cancel()
        self.assertEqual(self.loop._core.timer_count, 40)
        fired = []
        self.loop.call_later(0.001, fired.append, True)
        self.loop.call_later(0.01, self.loop.stop)
        self.loop.run_forever()
        self.assertEqual(fired, [True])
        self.assertEqual(self.loop._core.timer_count, 40)

    def test_a_cancelled_handle_does_not_run(self):
        seen = []
        handle = self.loop.call_soon(seen.append, "no")
        handle.cancel()
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()
        self.assertEqual(seen, [])

    def test_stop_before_run_forever_runs_one_iteration_without_waiting(self):
        seen = []
        self.loop.call_later(3600, seen.append, "never")
        self.loop.call_soon(seen.append, "ran")
        self.loop.stop()
        started = time.monotonic()
        self.loop.run_forever()
        self.assertLess(time.monotonic() - started, 1)
        self.assertEqual(seen, ["ran"])

    def test_exception_in_a_callback_goes_to_the_handler_and_the_loop_goes_on(self):
        contexts = []
        self.loop.set_exception_handler(lambda loop, context: contexts.append(context))
        seen = []
        self.loop.call_soon(lambda: 1 / 0)
        self.loop.call_soon(seen.append, "after")
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()
        self.assertEqual(seen, ["after"])
        self.assertEqual(len(contexts), 1)
        self.assertIsInstance(contexts[0]["exception"], ZeroDivisionError)

    def test_keyboard_interrupt_in_a_callback_leaves_the_loop(self):
        def interrupt():
            raise KeyboardInterrupt

        self.loop.call_soon(interrupt)
        with self.assertRaises(KeyboardInterrupt):
            self.loop.run_forever()
        self.assertFalse(self.loop.is_running())
        # Still usable afterwards.
        self.assertEqual(self.loop.run_until_complete(asyncio.sleep(0, result=7)), 7)

    def test_waiting_releases_the_gil(self):
        counted = 0
        stop = threading.Event()

        def count():
            nonlocal counted
            while not stop.is_set():
                counted += 1

        t = threading.Thread(target=count)
        t.start()
        try:
            before = counted
            self.loop.run_until_complete(asyncio.sleep(0.2))
            during = counted - before
        finally:
            stop.set()
            t.join()
        # A loop holding the GIL through its wait would leave the thread a few switch
        # intervals at most; with it released the thread counts for the whole 0.2 s.
        self.assertGreater(during, 100_000)

    def test_a_descriptor_number_closed_and_reused_is_watched_afresh(self):
        a, b = socket.socketpair()
        fired = []
        self.loop.add_reader(b.fileno(), lambda: fired.append(b.recv(16)))
        a.send(b"one")
        self.loop.run_until_complete(asyncio.sleep(0.05))
        self.assertEqual(fired, [b"one"])
        number = b.fileno()
        self.assertTrue(self.loop.remove_reader(number))
        a.close()
        b.close()  # behind corio's back, as asyncio's transports close theirs
        c, d = socket.socketpair()  # normally given the two numbers just freed
        try:
            if d.fileno() != number:
                os.dup2(d.fileno(), number)
                d.close()
                d = socket.socket(fileno=number)
            self.loop.add_reader(number, lambda: fired.append(d.recv(16)))
            c.send(b"two")
            deadline = time.monotonic() + 2
            while len(fired) < 2 and time.monotonic() < deadline:
                self.loop.run_until_complete(asyncio.sleep(0.01))
            self.assertEqual(fired, [b"one", b"two"])
            self.loop.remove_reader(number)
        finally:
            c.close()
            d.close()

    def test_close_drops_pending_callbacks_and_timers(self):
        class Canary:
            pass

        canary = Canary()
        ref = weakref.ref(canary)
        self.loop.call_soon(lambda c=canary: None)
        self.loop.call_later(3600, lambda c=canary: None)
        del canary
        self.loop.close()
        gc.collect()
        self.assertIsNone(ref(), "a callback outlived the closed loop")
        self.assertTrue(self.loop.is_closed())
        with self.assertRaises(RuntimeError):
            self.loop.call_soon(lambda: None)

    def test_a_base_exception_ends_the_iteration_and_the_rest_runs_next_time(self):
        seen = []

        def interrupt():
            raise KeyboardInterrupt

        self.loop.call_soon(interrupt)
        self.loop.call_soon(seen.append, "left for the next run")
        with self.assertRaises(KeyboardInterrupt):
            self.loop.run_forever()
        self.assertEqual(seen, [])  # asyncio leaves the rest of the iteration in _ready
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()
        self.assertEqual(seen, ["left for the next run"])

    def test_a_base_exception_in_a_timer_ends_the_iteration(self):
        seen = []

        def interrupt():
            raise SystemExit(3)

        when = self.loop.time() + 0.01
        self.loop.call_at(when, interrupt)
        self.loop.call_at(when, seen.append, "second timer")
        with self.assertRaises(SystemExit):
            self.loop.run_forever()
        self.assertEqual(seen, [])
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()
        self.assertEqual(seen, ["second timer"])

    def test_threadsafe_calls_made_before_a_wait_run_before_its_io_callbacks(self):
        a, b = socket.socketpair()
        try:
            seen = []
            self.loop.add_reader(b, lambda: (seen.append("io"), b.recv(16)))
            a.send(b"x")
            t = threading.Thread(target=self.loop.call_soon_threadsafe, args=(seen.append, "ts"))
            t.start()
            t.join()
            self.loop.call_later(0.05, self.loop.stop)
            self.loop.run_forever()
            self.assertEqual(seen, ["ts", "io"])
            self.loop.remove_reader(b)
        finally:
            a.close()
            b.close()

    def test_call_soon_from_a_foreign_thread_loses_nothing(self):
        # Not thread-safe in asyncio's contract (no wake-up), but it must not corrupt the loop
        # while the loop waits and queues I/O callbacks on its own thread.
        a, b = socket.socketpair()
        ran = 0
        calls = 20_000

        def count():
            nonlocal ran
            ran += 1

        def echo():
            data = b.recv(4096)
            if data:
                b.send(data)

        def pinger():
            for _ in range(2000):
                a.send(b"p")
                a.recv(4096)

        def caller():
            for _ in range(calls):
                self.loop.call_soon(count)

        try:
            self.loop.add_reader(b, echo)
            threads = [threading.Thread(target=pinger), threading.Thread(target=caller)]

            async def main():
                for t in threads:
                    t.start()
                while any(t.is_alive() for t in threads):
                    await asyncio.sleep(0.001)

            self.loop.run_until_complete(main())
            for t in threads:
                t.join()
            self.loop.run_until_complete(asyncio.sleep(0.01))
            self.assertEqual(ran, calls)
            self.loop.remove_reader(b)
        finally:
            a.close()
            b.close()

    def test_remove_reader_finds_a_socket_closed_since(self):
        a, b = socket.socketpair()
        a.close()
        self.loop.add_reader(b, lambda: None)
        self.loop.add_writer(b, lambda: None)
        number = b.fileno()
        b.close()  # fileno() is -1 now: asyncio looks the object up among its keys
        self.assertTrue(self.loop.remove_reader(b))
        self.assertTrue(self.loop.remove_writer(b))
        # Unregistered and closed, it cannot be found any more: ValueError, as from selectors.
        with self.assertRaises(ValueError):
            self.loop.remove_reader(b)
        self.assertNotIn(number, self.loop._selector.get_map())

    def test_get_map_looks_up_file_objects_as_selectors_do(self):
        a, b = socket.socketpair()
        try:
            self.loop.add_reader(b, lambda: None)
            mapping = self.loop._selector.get_map()
            self.assertIs(mapping[b].fileobj, b)
            self.assertIs(mapping[b.fileno()].fileobj, b)
            self.assertIn(b.fileno(), list(mapping))
            self.loop.remove_reader(b)
        finally:
            a.close()
            b.close()

    def test_add_reader_on_a_closed_descriptor_raises(self):
        a, b = socket.socketpair()
        number = b.fileno()
        a.close()
        b.close()
        with self.assertRaises(OSError) as caught:
            self.loop.add_reader(number, lambda: None)
        self.assertEqual(caught.exception.errno, errno.EBADF)
        self.assertNotIn(number, self.loop._selector.get_map())

    @unittest.skipUnless(sys.platform.startswith("linux"), "epoll refuses regular files")
    def test_add_reader_on_a_regular_file_raises_as_on_linux(self):
        with tempfile.TemporaryFile() as f:
            with self.assertRaises(PermissionError):
                self.loop.add_reader(f, lambda: None)
            self.assertNotIn(f.fileno(), self.loop._selector.get_map())

    @unittest.skipUnless(sys.platform.startswith("linux"), "epoll's rule")
    def test_add_reader_on_a_device_epoll_refuses_raises(self):
        with open(os.devnull, "rb") as f:
            with self.assertRaises(PermissionError):
                self.loop.add_reader(f, lambda: None)
            self.assertNotIn(f.fileno(), self.loop._selector.get_map())

    def test_a_registration_that_cannot_be_modified_is_dropped(self):
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.loop.add_reader(b.fileno(), lambda: None)
        number = b.detach()
        os.close(number)  # behind the loop's back
        with self.assertRaises(OSError) as caught:
            self.loop.add_writer(number, lambda: None)
        self.assertEqual(caught.exception.errno, errno.EBADF)
        # As selectors does: the key goes, and with it every watcher.
        self.assertNotIn(number, self.loop._selector.get_map())
        self.assertFalse(self.loop.remove_reader(number))

    def test_registering_a_registered_object_closed_since_is_a_key_error(self):
        selector = self.loop._selector
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        selector.register(b, selectors.EVENT_READ)
        b.close()
        with self.assertRaises(KeyError):
            selector.register(b, selectors.EVENT_READ)
        selector.unregister(b)

    def test_a_subclass_of_the_core_is_freed(self):
        class Core(corio._corio.Core):
            pass

        core = Core()
        core.call_soon(lambda: None)
        ref = weakref.ref(core)
        del core
        gc.collect()
        self.assertIsNone(ref())

    def test_a_loop_run_from_a_finalizer_at_interpreter_exit(self):
        # Module teardown frees objects on the finalizing thread, which may still run a loop.
        script = textwrap.dedent("""
            import asyncio, corio

            class RunsALoopWhenFreed:
                def __del__(self):
                    loop = corio.EventLoop()
                    loop.run_until_complete(asyncio.sleep(0.01))
                    loop.close()
                    print("ran", flush=True)

            kept = RunsALoopWhenFreed()
        """)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        done = subprocess.run([sys.executable, "-c", script], env=env,
                              capture_output=True, timeout=60)
        self.assertEqual((done.returncode, done.stdout, done.stderr), (0, b"ran\n", b""))

    def test_debug_mode_logs_slow_callbacks(self):
        self.loop.set_debug(True)
        self.loop.slow_callback_duration = 0.01
        self.loop.call_soon(time.sleep, 0.03)
        self.loop.call_soon(self.loop.stop)
        with self.assertLogs("asyncio", level="WARNING") as logs:
            self.loop.run_forever()
        self.assertTrue(any("Executing <Handle" in line and "took" in line
                            for line in logs.output), logs.output)

    def test_an_unclosed_loop_is_collected(self):
        loop = corio.new_event_loop()
        a, b = socket.socketpair()
        try:
            loop.add_reader(b, lambda: None)
            loop.call_later(3600, lambda: None)
            loop.call_soon(lambda: None)
            loop.run_until_complete(asyncio.sleep(0))
            ref = weakref.ref(loop)
            with self.assertWarns(ResourceWarning):
                del loop
                gc.collect()
            self.assertIsNone(ref(), "a loop nobody closed was never collected")
        finally:
            a.close()
            b.close()

    # CPython 3.11 ends a daemon thread that wants the GIL during exit with pthread_exit, a
    # forced unwind through pybind11's dispatcher: UBSan flags pybind11's catch of
    # abi::__forced_unwind (a reference bound to null) and ASan trips on stack shadow the
    # unwind left poisoned (google/sanitizers#1669). Both are about the unwind, not corio.
    @unittest.skipIf("libasan" in os.environ.get("LD_PRELOAD", ""),
                     "pthread_exit's forced unwind under ASan/UBSan")
    def test_a_loop_in_a_daemon_thread_at_interpreter_exit(self):
        script = textwrap.dedent("""
            import asyncio, threading, time, corio

            def spin():
                async def main():
                    while True:
                        await asyncio.sleep(0.0005)
                corio.run(main())

            threading.Thread(target=spin, daemon=True).start()
            time.sleep(0.05)
        """)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        for _ in range(10):
            done = subprocess.run([sys.executable, "-c", script], env=env,
                                  capture_output=True, timeout=60)
            self.assertEqual((done.returncode, done.stderr), (0, b""))

    def test_streams_and_a_subprocess_end_to_end(self):
        async def main():
            async def handle(reader, writer):
                writer.write((await reader.readline()).upper())
                await writer.drain()
                writer.close()

            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"hello\n")
            line = await reader.readline()
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()
            proc = await asyncio.create_subprocess_exec(
                "cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            out, _ = await proc.communicate(b"piped")
            return line, out, proc.returncode

        self.assertEqual(self.loop.run_until_complete(main()), (b"HELLO\n", b"piped", 0))

    # Socket transports read into one buffer their loop owns (corio._SocketTransport).

    def _serve_protocol(self, protocol):
        async def start():
            server = await self.loop.create_server(lambda: protocol, "127.0.0.1", 0)
            client = socket.socket()
            client.setblocking(False)
            await self.loop.sock_connect(client, server.sockets[0].getsockname())
            return server, client
        return self.loop.run_until_complete(start())

    class _Recorder(asyncio.Protocol):
        def __init__(self):
            self.chunks = []
            self.eof = False
            self.lost = asyncio.get_event_loop_policy().get_event_loop().create_future()

        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.chunks.append(data)

        def eof_received(self):
            self.eof = True

        def connection_lost(self, exc):
            if not self.lost.done():
                self.lost.set_result(exc)

    def _recorder(self):
        asyncio.set_event_loop(self.loop)
        self.addCleanup(asyncio.set_event_loop, None)
        return self._Recorder()

    def test_each_read_hands_the_protocol_bytes_of_its_own(self):
        first, second = self._recorder(), self._recorder()
        server1, client1 = self._serve_protocol(first)
        server2, client2 = self._serve_protocol(second)

        async def exchange():
            for i in range(20):  # the two connections' reads alternate through one buffer
                await self.loop.sock_sendall(client1, b"a%02d" % i)
                await self.loop.sock_sendall(client2, b"b%02d" % i)
                while sum(map(len, second.chunks)) < 3 * (i + 1):
                    await asyncio.sleep(0.001)
            client1.close()
            client2.close()
            await first.lost
            await second.lost

        self.loop.run_until_complete(exchange())
        for recorder, letter in ((first, b"a"), (second, b"b")):
            self.assertTrue(all(type(chunk) is bytes for chunk in recorder.chunks))
            self.assertEqual(b"".join(recorder.chunks),
                             b"".join(letter + b"%02d" % i for i in range(20)))
            self.assertTrue(recorder.eof)
        for server in (server1, server2):
            server.close()
            self.loop.run_until_complete(server.wait_closed())

    def test_a_large_transfer_arrives_whole_in_reads_of_at_most_max_size(self):
        recorder = self._recorder()
        server, client = self._serve_protocol(recorder)
        payload = os.urandom(3 * 1024 * 1024)

        async def send():
            await self.loop.sock_sendall(client, payload)
            client.shutdown(socket.SHUT_WR)
            while not recorder.eof:
                await asyncio.sleep(0.001)
            client.close()
            await recorder.lost

        self.loop.run_until_complete(send())
        self.assertEqual(b"".join(recorder.chunks), payload)
        self.assertLessEqual(max(map(len, recorder.chunks)), recorder.transport.max_size)
        server.close()
        self.loop.run_until_complete(server.wait_closed())

    def test_a_reset_while_reading_loses_the_connection_with_the_error(self):
        recorder = self._recorder()
        server, client = self._serve_protocol(recorder)

        async def reset():
            await self.loop.sock_sendall(client, b"before")
            while not recorder.chunks:
                await asyncio.sleep(0.001)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()  # RST: the server's next read fails with ECONNRESET
            return await recorder.lost

        exc = self.loop.run_until_complete(reset())
        self.assertIsInstance(exc, ConnectionResetError)
        self.assertEqual(recorder.chunks, [b"before"])
        self.assertFalse(recorder.eof)
        server.close()
        self.loop.run_until_complete(server.wait_closed())


if __name__ == "__main__":
    unittest.main()
