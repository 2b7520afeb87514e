"""corio's event loop for asyncio, as uvloop is libuv's.

    import asyncio, corio
    corio.run(main())                  # or: asyncio.Runner(loop_factory=corio.new_event_loop)
    corio.install()                    # every new loop is a corio loop from now on

EventLoop is asyncio's own Unix selector loop (transports, servers, sockets, subprocesses,
signals, executors, exception handling: all unchanged) with its engine replaced: the ready
queue, the timer heap, the descriptor watchers and the iteration itself are corio's (the C++
module _corio), so the loop waits in corio's backend (epoll, io_uring or kqueue) with the GIL
released. This file must never poll a selector or keep asyncio's own _ready or _scheduled:
every callback goes through corio, or order and timing would split between two queues.
"""

import asyncio
import collections.abc
import functools
import selectors
from asyncio import base_events, events, selector_events
from asyncio.log import logger

from . import _corio

__all__ = ["EventLoop", "EventLoopPolicy", "new_event_loop", "install", "run", "backend"]

backend = _corio.Core().backend
"""The kernel interface this build of corio waits on ("epoll", "io_uring", "kqueue")."""

_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE


def _fileno(fileobj):
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"Invalid file object: {fileobj!r}") from None
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {fd}")
    return fd


class _SelectorMapping(collections.abc.Mapping):
    """get_map(): keys by descriptor number, looked up by number or file object."""

    def __init__(self, selector):
        self._selector = selector

    def __len__(self):
        return len(self._selector._keys)

    def __getitem__(self, fileobj):
        try:
            return self._selector._keys[self._selector._lookup(fileobj)]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None

    def __iter__(self):
        return iter(self._selector._keys)


class _Selector(selectors.BaseSelector):
    """The selector asyncio's loop registers readers and writers with.

    Registrations become corio descriptor watchers; nothing ever calls select(): a ready
    descriptor runs its handle from corio's loop, in the iteration that saw it ready.
    """

    def __init__(self, core):
        self._core = core
        self._keys = {}
        self._loop = None  # set once the loop exists: cancelled handles unregister through it

    def register(self, fileobj, events, data=None):
        if not events or events & ~(_READ | _WRITE):
            raise ValueError(f"Invalid events: {events!r}")
        fd = self._lookup(fileobj)
        if fd in self._keys:
            raise KeyError(f"{fileobj!r} (FD {fd}) is already registered")
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._watch(fd, 0, events)
        self._keys[fd] = key
        return key

    def unregister(self, fileobj):
        fd = self._lookup(fileobj)
        try:
            key = self._keys.pop(fd)
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None
        self._watch(fd, key.events, 0)
        return key

    def modify(self, fileobj, events, data=None):
        if not events or events & ~(_READ | _WRITE):
            raise ValueError(f"Invalid events: {events!r}")
        fd = self._lookup(fileobj)
        try:
            old = self._keys[fd]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None
        key = old._replace(events=events, data=data)
        try:
            self._watch(fd, old.events, events)
        except BaseException:
            # As selectors does: a registration that cannot be changed is dropped whole.
            del self._keys[fd]
            self._core.remove_reader(fd)
            self._core.remove_writer(fd)
            raise
        self._keys[fd] = key
        return key

    def select(self, timeout=None):
        raise RuntimeError("corio's loop waits for descriptors itself; select() is not used")

    def get_key(self, fileobj):
        return self.get_map()[fileobj]

    def get_map(self):
        return _SelectorMapping(self)

    def _lookup(self, fileobj):
        """The descriptor number of a registered object, even one closed since (its fileno()
        is -1 then): found among the keys, as selectors' own lookup does."""
        try:
            return _fileno(fileobj)
        except ValueError:
            for key in self._keys.values():
                if key.fileobj is fileobj:
                    return key.fd
            raise

    def close(self):
        for fd in list(self._keys):
            key = self._keys.pop(fd)
            if not self._core.closed:
                self._watch(fd, key.events, 0)

    def _watch(self, fd, old, new):
        if new & _READ and not old & _READ:
            self._core.add_reader(fd, functools.partial(self._ready, fd, _READ))
        elif old & _READ and not new & _READ:
            self._core.remove_reader(fd)
        if new & _WRITE and not old & _WRITE:
            self._core.add_writer(fd, functools.partial(self._ready, fd, _WRITE))
        elif old & _WRITE and not new & _WRITE:
            self._core.remove_writer(fd)

    def _ready(self, fd, event):
        key = self._keys.get(fd)
        if key is None or not key.events & event:
            return
        reader, writer = key.data
        handle = reader if event == _READ else writer
        if handle is None:
            return
        if handle._cancelled:
            if event == _READ:
                self._loop._remove_reader(fd)
            else:
                self._loop._remove_writer(fd)
        elif self._loop._debug:
            self._loop._run_handle_debug(handle)
        else:
            handle._run()


# Whether this Python's selector loop refuses a socket that another open transport still uses
# (newer CPythons check it in _make_socket_transport): ours does exactly as the base does.
_BASE_CHECKS_FD = ("_ensure_fd_no_transport" in
                   selector_events.BaseSelectorEventLoop._make_socket_transport.__code__.co_names)


class _SocketTransport(selector_events._SelectorSocketTransport):
    """asyncio's socket transport, reading into one buffer its loop owns.

    asyncio's transport asks sock.recv() for up to max_size (256 KiB) bytes each time: a new
    bytes object that size, which glibc maps and unmaps per read (mmap, mremap, munmap: three
    system calls for each message received). Here the data is read into the loop's buffer and
    only the bytes received are copied out. A protocol never sees the buffer itself; the
    BufferedProtocol path (get_buffer) is asyncio's, unchanged.
    """

    def _read_ready__data_received(self):
        if self._conn_lost:
            return
        view = self._loop._read_view
        try:
            n = self._sock.recv_into(view)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on socket transport")
            return
        if not n:
            self._read_ready__on_eof()
            return
        data = bytes(view[:n])
        try:
            self._protocol.data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")


class EventLoop(asyncio.SelectorEventLoop):
    """asyncio's event loop, run by corio."""

    def __init__(self):
        self._core = _corio.Core()
        selector = _Selector(self._core)
        super().__init__(selector)
        selector._loop = self
        # Every socket transport of this loop reads here, on the loop's thread, and copies out
        # what it read before any protocol runs: one buffer serves them all.
        self._read_view = memoryview(bytearray(_SocketTransport.max_size))

    def __repr__(self):
        return (f"<{self.__class__.__name__} backend={self._core.backend} "
                f"running={self.is_running()} closed={self.is_closed()} "
                f"debug={self.get_debug()}>")

    def time(self):
        return self._core.time()

    def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None, server=None):
        if _BASE_CHECKS_FD:
            self._ensure_fd_no_transport(sock)
        return _SocketTransport(self, sock, protocol, waiter, extra, server)

    # Everything that asyncio queues in _ready goes to corio's ready queue instead.
    def _call_soon(self, callback, args, context):
        handle = events.Handle(callback, args, self, context)
        if handle._source_traceback:
            del handle._source_traceback[-1]
        self._core.call_soon(handle)
        return handle

    def _add_callback(self, handle):
        # asyncio's appends to _ready even on a closed loop, where it never runs.
        if not handle._cancelled and not self._core.closed:
            self._core.call_soon(handle)

    # Debug mode: asyncio's report of callbacks slower than slow_callback_duration.
    def set_debug(self, enabled):
        super().set_debug(enabled)
        self._core.set_debug_runner(self._run_handle_debug if enabled else None)

    def _run_handle_debug(self, handle):
        try:
            self._current_handle = handle  # the default exception handler shows its origin
            started = self.time()
            handle._run()
            took = self.time() - started
            if took >= self.slow_callback_duration:
                logger.warning("Executing %s took %.3f seconds",
                               base_events._format_handle(handle), took)
        finally:
            self._current_handle = None

    def call_soon_threadsafe(self, callback, *args, context=None):
        self._check_closed()
        if self._debug:
            self._check_callback(callback, "call_soon_threadsafe")
        handle = events.Handle(callback, args, self, context)
        if handle._source_traceback:
            del handle._source_traceback[-1]
        # One FIFO with call_soon, as asyncio's single queue: corio's call_soon takes in what
        # other threads queued before it.
        self._core.call_soon_threadsafe(handle)
        return handle

    # Timers live on corio's heap; a cancelled one leaves it at once.
    def call_at(self, when, callback, *args, context=None):
        if when is None:
            raise TypeError("when cannot be None")
        self._check_closed()
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_at")
        timer = events.TimerHandle(when, callback, args, self, context)
        if timer._source_traceback:
            del timer._source_traceback[-1]
        self._core.call_at(when, timer)
        timer._scheduled = True
        return timer

    def _timer_handle_cancelled(self, handle):
        if handle._scheduled:
            self._core.cancel_timer(handle)
            handle._scheduled = False

    def _run_once(self):
        # A stopping loop finishes what is ready without waiting, as asyncio's does.
        self._core.run_once(not self._stopping)

    def close(self):
        super().close()
        if not self.is_running() and not self._core.closed:
            self._core.close()


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """asyncio's default policy, making corio loops."""

    _loop_factory = EventLoop


def new_event_loop():
    return EventLoop()


def install():
    """Make corio the event loop of every asyncio.run() and new_event_loop() from now on."""
    asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main, *, debug=None):
    """asyncio.run(main) on a corio loop."""
    with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)
