// _corio: corio's event loop core for Python (pybind11). bindings/python/corio/__init__.py
// builds asyncio's event loop on it; this file only carries callbacks, timers and descriptor
// watchers between asyncio's Handle objects and corio's loop.
// It must never run Python code without the GIL, never hold the GIL while the loop may block
// in the kernel (other threads would stall in call_soon_threadsafe), and never let a Python
// exception unwind through corio's loop: it is kept and raised when run_once returns.
#include <pybind11/pybind11.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/epoll.h>
#endif

#include <cerrno>
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "corio/event_loop.hpp"
#include "corio/sock_ops.hpp"

namespace py = pybind11;

namespace {

bool interpreter_finalizing() noexcept {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing() != 0;
#else
  return _Py_IsFinalizing() != 0;
#endif
}

// The thread that finalizes the interpreter; set when the module is imported.
unsigned long main_thread_ident = 0;

// A strong reference owned by one Core, and on that Core's list, so that Python's garbage
// collector sees every object the Core keeps alive (a loop nobody closed is a cycle through
// its callbacks: a Handle refers to its loop). It may be dropped on a thread that does not
// hold the GIL (corio destroys a callback wherever its loop lets it go).
// The list changes only under the GIL: references are made, moved and dropped by corio on
// the loop's thread inside run_once, or by the Python calls that made them.
class PyRef {
 public:
  PyRef(PyRef*& list, py::object object) noexcept : list_(&list), object_(object.release().ptr()) {
    link();
  }
  PyRef(PyRef&& other) noexcept
      : list_(other.list_), object_(std::exchange(other.object_, nullptr)) {
    link();
  }
  PyRef(const PyRef&) = delete;
  PyRef& operator=(const PyRef&) = delete;
  PyRef& operator=(PyRef&&) = delete;
  // Always unlinked, even when the reference itself must leak: a node left on the list would
  // be read by the next tp_traverse after its memory is gone. Py_IsInitialized() is no guide:
  // it turns false as finalization starts, while module teardown still frees callbacks (on
  // the finalizing thread, which holds the GIL). PyRefs die only with their Core or its
  // callbacks, never after the interpreter is gone.
  ~PyRef() {
    if (object_ == nullptr || PyGILState_Check()) {
      unlink();
      Py_XDECREF(object_);
      return;
    }
    if (interpreter_finalizing()) {
      // Taking the GIL now would end this thread inside a destructor: leak the object.
      unlink();
      return;
    }
    py::gil_scoped_acquire gil;
    unlink();
    Py_XDECREF(object_);
  }

  // Null once the garbage collector has cleared the owning Core.
  PyObject* get() const noexcept { return object_; }

  // The Core's tp_traverse and tp_clear.
  static int visit_all(PyRef* list, visitproc visit, void* arg) {
    for (PyRef* ref = list; ref != nullptr; ref = ref->next_) Py_VISIT(ref->object_);
    return 0;
  }
  static void clear_all(PyRef*& list) {
    // Py_CLEAR may run finalizers that drop other references: start over after each one.
    for (;;) {
      PyRef* ref = list;
      while (ref != nullptr && ref->object_ == nullptr) ref = ref->next_;
      if (ref == nullptr) return;
      Py_CLEAR(ref->object_);
    }
  }

 private:
  void link() noexcept {
    next_ = *list_;
    if (next_ != nullptr) next_->prev_ = this;
    *list_ = this;
  }
  void unlink() noexcept {
    if (prev_ != nullptr) {
      prev_->next_ = next_;
    } else if (*list_ == this) {
      *list_ = next_;
    }
    if (next_ != nullptr) next_->prev_ = prev_;
    prev_ = next_ = nullptr;
  }

  PyRef** list_;
  PyObject* object_;
  PyRef* prev_ = nullptr;
  PyRef* next_ = nullptr;
};

class Core {
 public:
  // Every iteration polls I/O, as asyncio's does: asyncio code may count on one iteration
  // seeing each event the kernel already has.
  // The GIL is held through the iteration and dropped only while the loop may block: other
  // threads need it then (to call call_soon_threadsafe), and callbacks need it always.
  Core() : loop_(corio::EventLoop::Options{.poll_every_iteration = true}) {
    loop_.set_wait_hooks(
        [this] { waiting_thread_ = PyEval_SaveThread(); },
        [this] {
          // A daemon thread's loop waking during interpreter exit: taking
          // the GIL would end the thread by unwinding it, so it sleeps
          // instead until the process is gone (as Python 3.14 does).
          // The finalizing (main) thread may still take it.
          while (interpreter_finalizing() && PyThread_get_thread_ident() != main_thread_ident) {
            std::this_thread::sleep_for(std::chrono::hours(1));
          }
          PyEval_RestoreThread(waiting_thread_);
        });
  }
  ~Core() { close_probe(); }
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  double time() const { return loop_.time(); }
  std::string backend_name() const { return std::string(corio::SelectedBackend::kName); }
  bool closed() const { return loop_.is_closed(); }
  std::size_t timer_count() const { return timers_.size(); }

  // An asyncio.Handle, run on the loop unless cancelled by then. asyncio's call_soon is not
  // thread-safe (no wake-up), but a call from another thread must not corrupt the loop,
  // which may be filling its ready queue on its own thread without the GIL: it goes the
  // thread-safe way.
  void call_soon(py::object handle) {
    if (loop_thread_ != std::thread::id{} && std::this_thread::get_id() != loop_thread_) {
      return call_soon_threadsafe(std::move(handle));
    }
    loop_.call_soon([this, ref = PyRef(refs_, std::move(handle))] { run_handle(ref.get()); });
  }

  void call_soon_threadsafe(py::object handle) {
    loop_.call_soon_threadsafe(
        [this, ref = PyRef(refs_, std::move(handle))] { run_handle(ref.get()); });
  }

  // An asyncio.TimerHandle due at `when` (time()'s clock). Kept by identity so that
  // cancel_timer can take it off corio's timer heap at once.
  void call_at(double when, py::object timer) {
    PyObject* key = timer.ptr();
    corio::TimerHandle handle = loop_.call_at(when, [this, ref = PyRef(refs_, std::move(timer))] {
      static PyObject* const scheduled_name = PyUnicode_InternFromString("_scheduled");
      PyObject* timer = ref.get();
      if (timer == nullptr) return;
      timers_.erase(timer);
      if (PyObject_SetAttr(timer, scheduled_name, Py_False) < 0)
        return keep(py::error_already_set());
      run_handle(timer);
    });
    timers_.insert_or_assign(key, std::move(handle));
  }

  bool cancel_timer(py::handle timer) {
    auto it = timers_.find(timer.ptr());
    if (it == timers_.end()) return false;
    corio::TimerHandle handle = std::move(it->second);
    timers_.erase(it);
    handle.cancel();
    return true;
  }

  // Level-triggered watchers: `callback` (no arguments) runs once per loop iteration while
  // the descriptor stays ready. Adding again replaces the callback. A descriptor that cannot
  // be watched raises here, as asyncio's selector does when it registers.
  void add_reader(int fd, py::object callback) {
    check_watchable(fd);
    corio::add_reader(loop_, fd, watcher(std::move(callback)));
  }
  bool remove_reader(int fd) { return corio::remove_reader(loop_, fd); }
  void add_writer(int fd, py::object callback) {
    check_watchable(fd);
    corio::add_writer(loop_, fd, watcher(std::move(callback)));
  }
  bool remove_writer(int fd) { return corio::remove_writer(loop_, fd); }

  // Debug mode (asyncio's slow-callback report): each handle is run through `runner`
  // (runner(handle) runs and times it) instead of handle._run(). None turns it off.
  void set_debug_runner(py::object runner) {
    debug_runner_.reset();
    if (!runner.is_none()) debug_runner_.emplace(refs_, std::move(runner));
  }

  // One iteration: wait for I/O (no longer than the next timer, not at all when `block` is
  // false or work is ready), fire due timers, run what is ready.
  void run_once(bool block) {
    loop_thread_ = std::this_thread::get_id();
    if (!block) loop_.call_soon([] {});
    loop_.run_once();
    if (error_) {
      py::error_already_set error = std::move(*error_);
      error_.reset();
      throw error;
    }
  }

  void close() {
    timers_.clear();
    debug_runner_.reset();  // a method of the Python loop: a cycle through it would outlive close
    loop_.close();
  }

  // Python's garbage collector (tp_traverse / tp_clear of Core).
  int traverse(visitproc visit, void* arg) const { return PyRef::visit_all(refs_, visit, arg); }
  void clear() {
    // Cancelling drops callbacks, whose finalizers may call back in: not while iterating.
    auto timers = std::exchange(timers_, {});
    for (auto& [timer, handle] : timers) handle.cancel();
    PyRef::clear_all(refs_);
  }

 private:
  corio::Callback watcher(py::object callback) {
    return [this, ref = PyRef(refs_, std::move(callback))] {
      if (ref.get() == nullptr) return;
      PyObject* result = PyObject_CallNoArgs(ref.get());
      if (result == nullptr) return keep(py::error_already_set());
      Py_DECREF(result);
    };
  }

  // asyncio's Linux loop registers with epoll, which refuses at once a closed descriptor
  // (EBADF) and one that cannot be polled (EPERM: a regular file, a directory, /dev/null);
  // corio's backends would only report it from the first wait, and io_uring and kqueue accept
  // files. The same answer on every backend: Linux asks a private epoll instance, for what
  // is neither a socket nor a pipe (those always can be polled, and are the common case).
  void check_watchable(int fd) {
    struct stat info {};
    int refused = 0;
    if (::fstat(fd, &info) != 0) {
      refused = EBADF;
#if defined(__linux__)
    } else if (!S_ISSOCK(info.st_mode) && !S_ISFIFO(info.st_mode)) {
      refused = epoll_refusal(fd);
#endif
    }
    if (refused == 0) return;
    errno = refused;
    PyErr_SetFromErrno(PyExc_OSError);  // PermissionError for EPERM, as Python maps errno
    throw py::error_already_set();
  }

#if defined(__linux__)
  int epoll_refusal(int fd) {
    if (epoll_probe_ == kNoProbe) epoll_probe_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_probe_ < 0) return 0;  // out of descriptors: let the backend decide
    epoll_event event{};
    if (::epoll_ctl(epoll_probe_, EPOLL_CTL_ADD, fd, &event) != 0) return errno;
    ::epoll_ctl(epoll_probe_, EPOLL_CTL_DEL, fd, &event);
    return 0;
  }
  void close_probe() noexcept {
    if (epoll_probe_ >= 0) ::close(epoll_probe_);
  }
  static constexpr int kNoProbe = -2;
  int epoll_probe_ = kNoProbe;  // created on first use, closed with the Core
#else
  void close_probe() noexcept {}
#endif

  // The C API with interned names: this runs once per callback, and pybind11's attr() would
  // build the name strings each time.
  void run_handle(PyObject* handle) {
    static PyObject* const cancelled_name = PyUnicode_InternFromString("_cancelled");
    static PyObject* const run_name = PyUnicode_InternFromString("_run");
    if (handle == nullptr) return;  // cleared by the garbage collector
    PyObject* cancelled = PyObject_GetAttr(handle, cancelled_name);
    if (cancelled == nullptr) return keep(py::error_already_set());
    const bool skip = cancelled == Py_True;
    Py_DECREF(cancelled);
    if (skip) return;
    // _run reports an Exception itself; only SystemExit and the like come out.
    PyObject* result = nullptr;
    if (debug_runner_ && debug_runner_->get() != nullptr) {
      // Owned for the call: the runner may call set_debug(False), which drops the Core's.
      py::object runner = py::reinterpret_borrow<py::object>(debug_runner_->get());
      result = PyObject_CallOneArg(runner.ptr(), handle);
    } else {
      result = PyObject_CallMethodNoArgs(handle, run_name);
    }
    if (result == nullptr) return keep(py::error_already_set());
    Py_DECREF(result);
  }

  // An exception that gets out of a callback (SystemExit, KeyboardInterrupt) ends the
  // iteration, the rest left queued, and is raised from run_once, as from asyncio's
  // _run_once. One that comes while another is pending can only be reported.
  void keep(py::error_already_set&& e) {
    loop_.end_iteration();
    if (!error_) {
      error_.emplace(std::move(e));
      return;
    }
    e.restore();
    PyErr_WriteUnraisable(nullptr);
  }

  // Declared first, destroyed last: every PyRef (those in loop_'s callbacks too) unlinks
  // itself from this list when it goes.
  PyRef* refs_ = nullptr;
  corio::EventLoop loop_;
  std::optional<PyRef> debug_runner_;
  PyThreadState* waiting_thread_ = nullptr;  // while the wait hooks have the GIL dropped
  std::thread::id loop_thread_;              // the thread of the latest run_once
  absl::flat_hash_map<PyObject*, corio::TimerHandle> timers_;
  std::optional<py::error_already_set> error_;
};

// Core takes part in garbage collection (see PyRef). pybind11 2.10 neither untracks an
// object before destroying it nor visits the type: both are done here.
Core* core_of(PyObject* self) noexcept {
  try {
    return &py::cast<Core&>(py::handle(self));
  } catch (...) {  // not constructed yet, or already destroyed
    return nullptr;
  }
}

void setup_gc(PyHeapTypeObject* heap_type) {
  PyTypeObject* type = &heap_type->ht_type;
  type->tp_flags |= Py_TPFLAGS_HAVE_GC;
  type->tp_traverse = [](PyObject* self, visitproc visit, void* arg) -> int {
    Py_VISIT(Py_TYPE(self));
    Core* core = core_of(self);
    return core == nullptr ? 0 : core->traverse(visit, arg);
  };
  type->tp_clear = [](PyObject* self) -> int {
    if (Core* core = core_of(self)) core->clear();
    return 0;
  };
  // pybind11 leaves tp_dealloc to be inherited from its base type in PyType_Ready; this one
  // names that function, since Py_TYPE(self)->tp_base is Core itself for a subclass.
  type->tp_dealloc = [](PyObject* self) {
    PyObject_GC_UnTrack(self);
    py::detail::pybind11_object_dealloc(self);
  };
}

}  // namespace

PYBIND11_MODULE(_corio, m) {
  main_thread_ident =
      py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
  m.doc() = "corio's event loop core; use the corio package, not this module";
  py::class_<Core>(m, "Core", py::custom_type_setup(&setup_gc))
      .def(py::init<>())
      .def("time", &Core::time)
      .def_property_readonly("backend", &Core::backend_name)
      .def_property_readonly("closed", &Core::closed)
      .def_property_readonly("timer_count", &Core::timer_count)
      .def("call_soon", &Core::call_soon)
      .def("call_soon_threadsafe", &Core::call_soon_threadsafe)
      .def("call_at", &Core::call_at)
      .def("cancel_timer", &Core::cancel_timer)
      .def("add_reader", &Core::add_reader)
      .def("remove_reader", &Core::remove_reader)
      .def("add_writer", &Core::add_writer)
      .def("remove_writer", &Core::remove_writer)
      .def("set_debug_runner", &Core::set_debug_runner)
      .def("run_once", &Core::run_once, py::arg("block") = true)
      .def("close", &Core::close);
}
